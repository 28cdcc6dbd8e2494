using Petals.Discovery;
using Petals.Models;

namespace Petals.Balancing;

/// <summary>
/// The servers of one model's swarm as balancing sees them: each server's span and throughput, at most one entry per
/// peer id. Immutable.
/// </summary>
public sealed class SwarmLoad
{
    private readonly ServerLoad[] _servers;

    /// <summary>Creates a swarm view.</summary>
    /// <param name="blockCount">The model's number of blocks, at least 1.</param>
    /// <param name="servers">The servers; each span non-empty and within the model, each throughput finite and non-negative, each peer id once.</param>
    /// <exception cref="ArgumentNullException"><paramref name="servers"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="blockCount"/> is not positive.</exception>
    /// <exception cref="ArgumentException">A server's peer id is empty or repeated, its span is empty or past the model, or its throughput is negative or not finite.</exception>
    public SwarmLoad(int blockCount, IEnumerable<ServerLoad> servers)
    {
        ArgumentNullException.ThrowIfNull(servers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockCount);
        _servers = [.. servers];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var server in _servers)
        {
            if (string.IsNullOrEmpty(server.PeerId) || !seen.Add(server.PeerId))
            {
                throw new ArgumentException($"Peer id '{server.PeerId}' is empty or appears twice; a swarm view has one entry per server.", nameof(servers));
            }

            if (Invalid(server, blockCount) is { } problem)
            {
                throw new ArgumentException($"Server '{server.PeerId}': {problem}", nameof(servers));
            }
        }

        BlockCount = blockCount;
    }

    /// <summary>The model's number of blocks.</summary>
    public int BlockCount { get; }

    /// <summary>The servers, in the order given.</summary>
    public IReadOnlyList<ServerLoad> Servers => _servers;

    /// <summary>The swarm's throughput: the least summed throughput over blocks (0 when a block has no server).</summary>
    public double Throughput
    {
        get
        {
            var blocks = BlockThroughputs();
            var min = double.PositiveInfinity;
            foreach (var value in blocks)
            {
                min = Math.Min(min, value);
            }

            return min;
        }
    }

    /// <summary>The summed throughput of the servers holding each block.</summary>
    /// <returns>A new array of <see cref="BlockCount"/> values.</returns>
    public double[] BlockThroughputs()
    {
        var result = new double[BlockCount];
        foreach (var server in _servers)
        {
            for (var b = server.Span.Start; b < server.Span.End; b++)
            {
                result[b] += server.Throughput;
            }
        }

        return result;
    }

    /// <summary>How many servers hold each block, whatever their throughput.</summary>
    /// <returns>A new array of <see cref="BlockCount"/> counts.</returns>
    public int[] BlockHolders()
    {
        var result = new int[BlockCount];
        foreach (var server in _servers)
        {
            for (var b = server.Span.Start; b < server.Span.End; b++)
            {
                result[b]++;
            }
        }

        return result;
    }

    /// <summary>This view without the server <paramref name="peerId"/> (the same view when it is not in it).</summary>
    /// <param name="peerId">The server to leave out.</param>
    /// <returns>The view without it.</returns>
    public SwarmLoad Without(string peerId)
    {
        ArgumentNullException.ThrowIfNull(peerId);
        return Array.Exists(_servers, s => string.Equals(s.PeerId, peerId, StringComparison.Ordinal))
            ? new SwarmLoad(BlockCount, _servers.Where(s => !string.Equals(s.PeerId, peerId, StringComparison.Ordinal)))
            : this;
    }

    /// <summary>
    /// The swarm as its announcements describe it: every <see cref="ServerState.Joining"/> or <see cref="ServerState.Online"/>
    /// server once, with the span and throughput of its latest-expiring such announcement (a server in the middle of a
    /// move may still have older records on some blocks). Announcements that cannot be part of the model (span past
    /// <paramref name="blockCount"/>, negative or non-finite throughput) are left out: they come from other peers.
    /// </summary>
    /// <param name="blockCount">The model's number of blocks.</param>
    /// <param name="blocks">What discovery returned for the blocks of the model.</param>
    /// <returns>The swarm view.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="blocks"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="blockCount"/> is not positive.</exception>
    public static SwarmLoad FromAnnouncements(int blockCount, IEnumerable<BlockServers> blocks)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockCount);
        var latest = new Dictionary<string, ServerInfo>(StringComparer.Ordinal);
        foreach (var block in blocks)
        {
            foreach (var info in block.Servers)
            {
                if (info.State is not (ServerState.Joining or ServerState.Online) || string.IsNullOrEmpty(info.PeerId)
                    || Invalid(new ServerLoad(info.PeerId, info.Span, info.Throughput), blockCount) is not null)
                {
                    continue;
                }

                if (!latest.TryGetValue(info.PeerId, out var known) || info.ExpiresAt > known.ExpiresAt)
                {
                    latest[info.PeerId] = info;
                }
            }
        }

        return new SwarmLoad(
            blockCount,
            latest.Values.OrderBy(i => i.PeerId, StringComparer.Ordinal).Select(i => new ServerLoad(i.PeerId, i.Span, i.Throughput)));
    }

    private static string? Invalid(ServerLoad server, int blockCount) =>
        server.Span.Count <= 0 || server.Span.Start < 0 || server.Span.End > blockCount ? $"span {server.Span} is empty or goes past the model's {blockCount} blocks."
        : !double.IsFinite(server.Throughput) || server.Throughput < 0 ? $"throughput {server.Throughput} is not a finite, non-negative number."
        : null;
}
