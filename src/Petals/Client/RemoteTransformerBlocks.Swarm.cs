using System.Diagnostics;
using System.Globalization;
using System.Text;
using Petals.Discovery;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <content>Connecting to servers found through discovery: a chain of announced servers, or the best chain a <see cref="SwarmSequenceManager"/> builds.</content>
public sealed partial class RemoteTransformerBlocks
{
    /// <summary>
    /// Connects to the announced servers of <paramref name="chain"/> and checks each against its announcement (the
    /// handshake's peer id must be <see cref="ServerInfo.PeerId"/>, the served blocks its <see cref="ServerInfo.Span"/>)
    /// and the whole chain as the address overload does.
    /// </summary>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="chain">The servers, e.g. from <see cref="SwarmSequenceManager.BuildChain"/>.</param>
    /// <param name="config">The model's configuration.</param>
    /// <param name="modelId">The model id announced in the handshake.</param>
    /// <param name="options">Connection options; defaults when null.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The chain, connected.</returns>
    /// <exception cref="RemoteChainException">When a server is not the peer that was announced, serves another span, or the chain is not one chain for this model.</exception>
    /// <exception cref="ProtocolException">When a handshake fails (another protocol version or model).</exception>
    /// <exception cref="TransportException">When a server cannot be reached.</exception>
    /// <exception cref="TimeoutException">When a server does not answer within <see cref="RemoteSequenceOptions.ConnectTimeout"/>.</exception>
    public static async Task<RemoteTransformerBlocks> ConnectAsync(
        ITransport transport,
        IReadOnlyList<ServerInfo> chain,
        ModelConfig config,
        string modelId,
        RemoteSequenceOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(chain);
        if (chain.Count == 0)
        {
            throw new ArgumentException("The chain names no server.", nameof(chain));
        }

        return await ConnectSegmentsAsync(transport, [.. chain.Select(s => (s, s.Span))], config, modelId, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Connects to the announced servers of <paramref name="segments"/>, each asked only for its segment's blocks, and
    /// checks each server against its announcement as the chain overload does, each segment to lie within its server's
    /// announced span, and the segments to tile the model's blocks: a failed span can thus be re-routed over servers
    /// whose spans overlap it only partly (e.g. servers of 0:3 and 2:5 used as 0:3 + 3:5).
    /// </summary>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="segments">The servers and the blocks to run on each (a non-empty range within its <see cref="ServerInfo.Span"/>), in block order.</param>
    /// <param name="config">The model's configuration.</param>
    /// <param name="modelId">The model id announced in the handshake.</param>
    /// <param name="options">Connection options; defaults when null.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The chain, connected.</returns>
    /// <exception cref="ArgumentException">When there is no segment.</exception>
    /// <exception cref="RemoteChainException">
    /// When a segment is not within its server's announced span (before anything is connected), a server is not the peer
    /// that was announced or serves another span, or the segments are not one chain for this model.
    /// </exception>
    /// <exception cref="ProtocolException">When a handshake fails (another protocol version or model).</exception>
    /// <exception cref="TransportException">When a server cannot be reached.</exception>
    /// <exception cref="TimeoutException">When a server does not answer within <see cref="RemoteSequenceOptions.ConnectTimeout"/>.</exception>
    public static async Task<RemoteTransformerBlocks> ConnectAsync(
        ITransport transport,
        IReadOnlyList<(ServerInfo Server, BlockRange Blocks)> segments,
        ModelConfig config,
        string modelId,
        RemoteSequenceOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(segments);
        if (segments.Count == 0)
        {
            throw new ArgumentException("The chain names no segment.", nameof(segments));
        }

        var outside = new List<string>();
        for (var i = 0; i < segments.Count; i++)
        {
            var (server, blocks) = segments[i];
            ArgumentNullException.ThrowIfNull(server, $"{nameof(segments)}[{i}].Server");
            if (blocks.Count <= 0 || blocks.Start < server.Span.Start || blocks.End > server.Span.End)
            {
                outside.Add(string.Create(CultureInfo.InvariantCulture,
                    $"segment {i} asks server {ChainPlanner.Short(server.PeerId)} at {server.Address} for blocks {blocks}, not within its announced span {server.Span}"));
            }
        }

        if (outside.Count > 0)
        {
            throw new RemoteChainException(new StringBuilder("The segments do not fit their servers: ").AppendJoin("; ", outside).Append('.').ToString());
        }

        return await ConnectSegmentsAsync(transport, segments, config, modelId, options, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<RemoteTransformerBlocks> ConnectSegmentsAsync(
        ITransport transport,
        IReadOnlyList<(ServerInfo Server, BlockRange Blocks)> segments,
        ModelConfig config,
        string modelId,
        RemoteSequenceOptions? options,
        CancellationToken cancellationToken)
    {
        var (blocks, failures) = await TryConnectChainAsync(transport, segments, config, modelId, options, cancellationToken).ConfigureAwait(false);
        if (blocks is not null)
        {
            return blocks;
        }

        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failures[0].Error);
        throw new UnreachableException();
    }

    /// <summary>
    /// Connects to the route <paramref name="sequence"/> chooses (call <see cref="SwarmSequenceManager.StartAsync"/>
    /// first): pings servers (<see cref="SwarmSequenceManager.PingAsync"/>), routes with
    /// <see cref="SwarmSequenceManager.RouteInference"/> (segments may be sub-ranges of the servers' spans) and connects
    /// every segment. A server that cannot be reached, refuses, or does not match its announcement is recorded as failed
    /// (banned for a while, see <see cref="SwarmSequenceManager.BannedPeers"/>), excluded, and the model routed again, up
    /// to <see cref="SwarmSequenceOptions.MaxChainAttempts"/> routes; the servers of the connected route are recorded as
    /// successful. The chain recovers from failures: its sessions re-route a failed server's blocks and replay their
    /// inputs (Algorithm 1), its stateless calls are routed by throughput and retried (see <see cref="OpenSessionAsync"/>,
    /// <see cref="ForwardAsync"/>, <see cref="SpanRecovered"/>).
    /// </summary>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="sequence">The swarm's servers of the model; its <see cref="SwarmSequenceManager.ModelId"/> is announced in the handshake.</param>
    /// <param name="config">The model's configuration; its block count must be the manager's.</param>
    /// <param name="options">Connection options; defaults when null.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The chain, connected.</returns>
    /// <exception cref="RemoteChainException">
    /// When no chain of online servers covers the model (naming the uncovered blocks), or every chain tried failed (listing
    /// each failed server and why).
    /// </exception>
    public static async Task<RemoteTransformerBlocks> ConnectAsync(
        ITransport transport,
        SwarmSequenceManager sequence,
        ModelConfig config,
        RemoteSequenceOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(sequence);
        ArgumentNullException.ThrowIfNull(config);
        if (config.NumLayers != sequence.BlockCount)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"The model has {config.NumLayers} blocks but the sequence manager of {sequence.ModelId} routes {sequence.BlockCount}."),
                nameof(config));
        }

        options ??= new RemoteSequenceOptions();
        options.Validate();

        // Unreachable servers simply get no measurement (the router assumes RouterOptions.UnknownRtt for them); connecting decides.
        await sequence.PingAsync(transport, options.PeerId, cancellationToken).ConfigureAwait(false);
        var excluded = new HashSet<string>(StringComparer.Ordinal);
        var attempts = new List<string>();
        for (var attempt = 1; attempt <= sequence.Options.MaxChainAttempts; attempt++)
        {
            IReadOnlyList<Petals.Routing.RouteSegment> route;
            try
            {
                route = sequence.RouteInference(1, 0, excluded);
            }
            catch (RemoteChainException) when (attempt == 1)
            {
                // The view may predate servers that announced since (or list expired ones): read the swarm again, once.
                await sequence.RefreshAsync(cancellationToken).ConfigureAwait(false);
                route = sequence.RouteInference(1, 0, excluded);
            }
            catch (RemoteChainException e) when (attempts.Count > 0)
            {
                throw new RemoteChainException(DescribeAttempts($"No chain is left after excluding the servers that failed: {e.Message}", attempts), e);
            }

            var (blocks, failures) = await TryConnectChainAsync(transport, [.. route.Select(s => (s.Server, s.Blocks))], config, sequence.ModelId, options, cancellationToken).ConfigureAwait(false);
            if (blocks is not null)
            {
                foreach (var segment in route)
                {
                    sequence.RecordSuccess(segment.Server.PeerId);
                }

                ClientLog.ChainConnected(sequence.Logger, route.Count, sequence.ModelId, string.Join(", ", route.Select(s => $"{s.Blocks} by {s.Server.PeerId} at {s.Server.Address}")));
                blocks.EnableRecovery(transport, sequence);
                return blocks;
            }

            foreach (var (server, error) in failures)
            {
                var segment = route.First(s => ReferenceEquals(s.Server, server)).Blocks;
                ClientLog.ServerExcluded(sequence.Logger, server.PeerId, server.Address.ToString(), segment.ToString(), sequence.ModelId, error.Message);
                sequence.RecordFailure(server.PeerId);
                excluded.Add(server.PeerId);
                attempts.Add(string.Create(CultureInfo.InvariantCulture, $"attempt {attempt}: server {ChainPlanner.Short(server.PeerId)} at {server.Address} (blocks {segment}): {error.Message}"));
            }
        }

        throw new RemoteChainException(DescribeAttempts(
            string.Create(CultureInfo.InvariantCulture, $"Every chain of model {sequence.ModelId} tried failed ({sequence.Options.MaxChainAttempts} attempts)."),
            attempts));
    }

    private static string DescribeAttempts(string headline, List<string> attempts) =>
        new StringBuilder(headline).Append(" Failures: ").AppendJoin("; ", attempts).Append('.').ToString();

    /// <summary>
    /// Connects to the server of every segment of <paramref name="chain"/>, asking each for its segment's blocks; returns
    /// the connected chain, or (with every connection closed) each server that failed and why. Caller cancellation propagates.
    /// </summary>
    private static async Task<(RemoteTransformerBlocks? Blocks, List<(ServerInfo Server, Exception Error)> Failures)> TryConnectChainAsync(
        ITransport transport,
        IReadOnlyList<(ServerInfo Server, BlockRange Blocks)> chain,
        ModelConfig config,
        string modelId,
        RemoteSequenceOptions? options,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(modelId);
        options ??= new RemoteSequenceOptions();
        options.Validate();
        var preamble = new ConnectionPreamble(options.PeerId, modelId, options.Limits.MaxFrameSize);
        var connecting = chain.Select(s => RemoteSpanConnection.ConnectAsync(transport, s.Server.Address, preamble, options, cancellationToken)).ToArray();
        try
        {
            await Task.WhenAll(connecting).ConfigureAwait(false);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            // Each failure is read from its task below.
        }
        catch
        {
            await DisposeConnectedAsync(connecting).ConfigureAwait(false);
            throw;
        }

        var failures = new List<(ServerInfo Server, Exception Error)>();
        var spans = new RemoteSpanConnection[chain.Count];
        for (var i = 0; i < chain.Count; i++)
        {
            var (server, segment) = chain[i];
            var task = connecting[i];
            if (!task.IsCompletedSuccessfully)
            {
                var error = task.Exception?.InnerException ?? new OperationCanceledException(cancellationToken);
                if (error is OperationCanceledException)
                {
                    await DisposeConnectedAsync(connecting).ConfigureAwait(false);
                    throw error;
                }

                failures.Add((server, error));
                continue;
            }

            var span = spans[i] = task.Result;
            span.Blocks = segment;
            if (AnnouncementProblems(span, server, config, modelId, options.Codec) is { } problems)
            {
                failures.Add((server, new RemoteChainException(problems)));
            }
        }

        if (failures.Count == 0)
        {
            try
            {
                CheckChain(spans, config, modelId, options.Codec);
                return (new RemoteTransformerBlocks(config, spans, options), failures);
            }
            catch (RemoteChainException)
            {
                await DisposeConnectedAsync(connecting).ConfigureAwait(false);
                throw;
            }
        }

        await DisposeConnectedAsync(connecting).ConfigureAwait(false);
        return (null, failures);
    }

    /// <summary>
    /// What makes a connected server unusable as announced: another handshake peer id or span than its announcement, or
    /// (for the blocks asked of it) another model, hidden size or codec; null when nothing.
    /// </summary>
    private static string? AnnouncementProblems(RemoteSpanConnection span, ServerInfo server, ModelConfig config, string modelId, WireCodec codec)
    {
        var problems = new List<string>();
        if (!string.Equals(span.Connection.Remote.PeerId, server.PeerId, StringComparison.Ordinal))
        {
            problems.Add($"the server at {server.Address} is announced as peer {server.PeerId} but its handshake says '{span.Connection.Remote.PeerId}'");
        }

        if (span.Info.Blocks != server.Span)
        {
            problems.Add($"{span.Name} is announced with blocks {server.Span} but serves {span.Info.Blocks}");
        }

        AddServerProblems(span, config, modelId, codec, problems);
        return problems.Count == 0 ? null : string.Join("; ", problems) + ".";
    }

    private static async Task DisposeConnectedAsync(Task<RemoteSpanConnection>[] connecting)
    {
        foreach (var task in connecting)
        {
            if (task.IsCompletedSuccessfully)
            {
                await task.Result.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
