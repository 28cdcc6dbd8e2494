using Petals.Discovery;
using Petals.Models;

namespace Petals.Client;

/// <summary>
/// A discovery over a fixed list of servers of one model: what a client given servers by address routes over (the
/// same routing, health and recovery as a swarm found through a DHT, with no server to add). Also for tests and for
/// pinning a client to known servers.
/// </summary>
/// <remarks>
/// Read-only: <see cref="AnnounceAsync"/> is refused. Records never expire unless their <see cref="ServerInfo.ExpiresAt"/>
/// is set. Thread-safe.
/// </remarks>
public sealed class StaticPeerDiscovery : IPeerDiscovery
{
    private readonly string _modelId;
    private readonly int _blockCount;
    private readonly ServerInfo[] _servers;

    /// <summary>Creates the discovery.</summary>
    /// <param name="modelId">The model the servers run.</param>
    /// <param name="blockCount">The model's number of blocks.</param>
    /// <param name="servers">The servers, at most one per peer id, each with a span within the model.</param>
    /// <param name="localPeerId">The id this side reads with. Default <c>"static"</c>.</param>
    /// <exception cref="ArgumentException">The model id is empty, the block count is not positive, a span is empty or past the model, or a peer id repeats.</exception>
    public StaticPeerDiscovery(string modelId, int blockCount, IEnumerable<ServerInfo> servers, string localPeerId = "static")
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        ArgumentNullException.ThrowIfNull(servers);
        ArgumentException.ThrowIfNullOrEmpty(localPeerId);
        _servers = [.. servers];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var server in _servers)
        {
            ArgumentNullException.ThrowIfNull(server, nameof(servers));
            if (server.Span.Count <= 0 || server.Span.Start < 0 || server.Span.End > blockCount)
            {
                throw new ArgumentException($"Server {server.PeerId} has span {server.Span}, not a non-empty range of the model's {blockCount} blocks.", nameof(servers));
            }

            if (!seen.Add(server.PeerId))
            {
                throw new ArgumentException($"Server {server.PeerId} is listed twice.", nameof(servers));
            }
        }

        _modelId = modelId;
        _blockCount = blockCount;
        LocalPeerId = localPeerId;
    }

    /// <inheritdoc />
    public string LocalPeerId { get; }

    /// <summary>The servers listed.</summary>
    public IReadOnlyList<ServerInfo> Servers => _servers;

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">Always: a static discovery takes no announcements.</exception>
    public Task<int> AnnounceAsync(string modelId, int blockCount, ServerInfo info, TimeSpan timeToLive, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("A static discovery lists a fixed set of servers; it takes no announcements (use a DHT or an in-memory discovery for that).");

    /// <inheritdoc />
    public Task<IReadOnlyList<BlockServers>> GetServersAsync(string modelId, BlockRange blocks, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        cancellationToken.ThrowIfCancellationRequested();
        var result = new BlockServers[Math.Max(0, blocks.Count)];
        var ours = string.Equals(modelId, _modelId, StringComparison.Ordinal);
        for (var i = 0; i < result.Length; i++)
        {
            var block = blocks.Start + i;
            result[i] = new BlockServers(block, ours ? [.. _servers.Where(s => s.Span.Contains(block))] : []);
        }

        return Task.FromResult<IReadOnlyList<BlockServers>>(result);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<SwarmModelInfo>> GetModelsAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult<IReadOnlyList<SwarmModelInfo>>(_servers.Length == 0 ? [] : [new SwarmModelInfo(_modelId, _blockCount, _servers.Length)]);
    }
}
