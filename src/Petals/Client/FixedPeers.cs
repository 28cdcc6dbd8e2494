using System.Globalization;
using System.Text;
using Petals.Discovery;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <summary>
/// Turns servers given by address into the announcements of a <see cref="StaticPeerDiscovery"/>: connects to each,
/// reads its info, and checks before any tensor is sent that every one serves this model, hidden size and codec, and
/// that together they cover every block.
/// </summary>
internal static class FixedPeers
{
    /// <summary>Connects to every address in parallel and adds each connection to <paramref name="pool"/>.</summary>
    /// <returns>One announcement per server, as its handshake and info describe it.</returns>
    /// <exception cref="RemoteChainException">Some server cannot serve this model, or the servers leave blocks uncovered; lists every problem and every server's span.</exception>
    /// <exception cref="TransportException">A server cannot be reached (the first such failure; every connection made is closed).</exception>
    /// <exception cref="ProtocolException">A handshake fails.</exception>
    /// <exception cref="TimeoutException">A server does not answer within the connect timeout.</exception>
    /// <remarks>
    /// With <paramref name="requiredQuantization"/>, servers that run another quantization (or state none) are left out of
    /// the announcements; the others must still cover every block, else the error names the requirement and what each
    /// server runs.
    /// </remarks>
    public static async Task<IReadOnlyList<ServerInfo>> ConnectAsync(ConnectionPool pool, IReadOnlyList<PeerAddress> peers, ModelConfig config, string modelId, WireCodec codec, CancellationToken cancellationToken, string? requiredQuantization = null)
    {
        var connecting = peers.Select(p => pool.ConnectAsync(p, cancellationToken)).ToArray();
        try
        {
            await Task.WhenAll(connecting).ConfigureAwait(false);
        }
        catch
        {
            foreach (var task in connecting)
            {
                if (task.IsCompletedSuccessfully)
                {
                    await task.Result.DisposeAsync().ConfigureAwait(false);
                }
            }

            throw;
        }

        var addresses = new Dictionary<RemoteSpanConnection, PeerAddress>();
        for (var i = 0; i < peers.Count; i++)
        {
            addresses[connecting[i].Result] = peers[i];
        }

        var servers = connecting.Select(t => t.Result).OrderBy(s => s.Info.Blocks.Start).ThenBy(s => s.Info.Blocks.End).ToArray();

        // A server is known by its handshake's peer id, or, where several share one (servers started without an identity
        // introduce themselves with the same default), by that id and its address.
        var shared = servers.GroupBy(s => s.Connection.Remote.PeerId, StringComparer.Ordinal).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
        var ids = new Dictionary<RemoteSpanConnection, string>();
        foreach (var server in servers)
        {
            var id = server.Connection.Remote.PeerId;
            ids[server] = shared.Contains(id) ? $"{id}@{addresses[server]}" : id;
            pool.Add(ids[server], server);
        }

        var problems = new List<string>();
        var covered = new bool[config.NumLayers];
        var leftOut = new List<string>();
        foreach (var server in servers)
        {
            ServerChecks.AddProblems(server, server.Info.Blocks, config, modelId, codec, problems);
            if (ServerChecks.QuantizationProblem(server, requiredQuantization) is { } mismatch)
            {
                leftOut.Add(mismatch);
                continue;
            }

            var span = server.Info.Blocks;
            if (span.End > config.NumLayers)
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"{server.Name} runs blocks up to {span.End}, but the model has {config.NumLayers}"));
            }

            for (var b = Math.Max(0, span.Start); b < Math.Min(span.End, config.NumLayers); b++)
            {
                covered[b] = true;
            }
        }

        foreach (var gap in Routing.MinLatencyRouter.Gaps(covered, 0))
        {
            problems.Add(requiredQuantization is null
                ? $"no server covers blocks {gap}"
                : $"no server with the required weight quantization '{requiredQuantization}' covers blocks {gap} (left out: {(leftOut.Count == 0 ? "none" : string.Join("; ", leftOut))})");
        }

        if (problems.Count > 0)
        {
            throw new RemoteChainException(new StringBuilder("The servers cannot run the model's ")
                .Append(config.NumLayers.ToString(CultureInfo.InvariantCulture)).Append(" blocks: ")
                .AppendJoin("; ", problems).Append(". Servers: ")
                .AppendJoin(", ", servers.Select(s => requiredQuantization is not null ? $"{s.Connection.RemoteAddress} = {s.Info.Blocks} ({s.Info.Quantization ?? "quantization not stated"})" : $"{s.Connection.RemoteAddress} = {s.Info.Blocks}"))
                .Append('.').ToString());
        }

        return [.. servers.Where(s => ServerChecks.QuantizationProblem(s, requiredQuantization) is null).Select(s => new ServerInfo
        {
            PeerId = ids[s],
            Address = addresses[s],
            State = ServerState.Online,
            Span = s.Info.Blocks,
            CacheTokensLeft = (long)Math.Min(s.Info.CacheTokensLeft, long.MaxValue),
            Quantization = s.Info.Quantization,
            Adapters = s.Info.Adapters ?? [],
        })];
    }
}
