using System.Globalization;
using Petals.Discovery;
using Petals.Models;

namespace Petals.Testing.Discovery;

/// <summary>
/// An in-process discovery swarm: the shared registry that every <see cref="MemoryPeerDiscovery"/> created from it
/// announces to and reads from, as servers and clients share a DHT. Announcements expire on the injected
/// <see cref="System.TimeProvider"/> (an announcement is visible until its <see cref="ServerInfo.ExpiresAt"/>, not at
/// it), so a test with a manual clock controls expiry exactly. Use it for tests and simulations of code written
/// against <see cref="IPeerDiscovery"/> that need no DHT.
/// </summary>
/// <remarks>Thread-safe: every operation takes one lock.</remarks>
public sealed class MemoryDiscoveryNetwork
{
    private readonly Lock _gate = new();
    private readonly Dictionary<(string ModelId, int Block), Dictionary<string, ServerInfo>> _blocks = [];
    private readonly Dictionary<string, Dictionary<string, (int BlockCount, DateTimeOffset ExpiresAt)>> _models = new(StringComparer.Ordinal);
    private int _peers;

    /// <summary>Creates an empty swarm.</summary>
    /// <param name="timeProvider">The clock announcements expire by; the system clock when null.</param>
    public MemoryDiscoveryNetwork(TimeProvider? timeProvider = null)
    {
        TimeProvider = timeProvider ?? TimeProvider.System;
    }

    /// <summary>The clock announcements expire by.</summary>
    public TimeProvider TimeProvider { get; }

    /// <summary>Creates a peer of this swarm: its own <see cref="IPeerDiscovery"/>, announcing under <paramref name="peerId"/>.</summary>
    /// <param name="peerId">
    /// The peer's id (<see cref="IPeerDiscovery.LocalPeerId"/>); when null, <c>mem-peer-N</c> with N counting from 1 in this
    /// swarm. Two peers created with the same id act as one peer (as a restarted server that kept its identity): each
    /// replaces the other's announcements.
    /// </param>
    /// <returns>The peer's discovery.</returns>
    /// <exception cref="ArgumentException"><paramref name="peerId"/> is empty.</exception>
    public MemoryPeerDiscovery CreatePeer(string? peerId = null)
    {
        if (peerId is null)
        {
            peerId = string.Create(CultureInfo.InvariantCulture, $"mem-peer-{Interlocked.Increment(ref _peers)}");
        }
        else
        {
            ArgumentException.ThrowIfNullOrEmpty(peerId);
        }

        return new MemoryPeerDiscovery(this, peerId);
    }

    /// <summary>Records a validated announcement: one entry per block of its span and one model-index entry, replacing the peer's earlier ones.</summary>
    internal void Announce(string modelId, int blockCount, ServerInfo info)
    {
        lock (_gate)
        {
            for (var block = info.Span.Start; block < info.Span.End; block++)
            {
                if (!_blocks.TryGetValue((modelId, block), out var servers))
                {
                    servers = new Dictionary<string, ServerInfo>(StringComparer.Ordinal);
                    _blocks.Add((modelId, block), servers);
                }

                servers[info.PeerId] = info;
            }

            if (!_models.TryGetValue(modelId, out var entries))
            {
                entries = new Dictionary<string, (int, DateTimeOffset)>(StringComparer.Ordinal);
                _models.Add(modelId, entries);
            }

            entries[info.PeerId] = (blockCount, info.ExpiresAt);
        }
    }

    /// <summary>The unexpired announcements of each block of <paramref name="blocks"/>, in block order, each block's ordered by peer id.</summary>
    internal BlockServers[] GetServers(string modelId, BlockRange blocks)
    {
        var now = TimeProvider.GetUtcNow();
        var result = new BlockServers[blocks.Count];
        lock (_gate)
        {
            for (var i = 0; i < result.Length; i++)
            {
                var block = blocks.Start + i;
                ServerInfo[] live = [];
                if (_blocks.TryGetValue((modelId, block), out var servers))
                {
                    DropExpired(servers, s => s.ExpiresAt, now);
                    live = [.. servers.Values.OrderBy(s => s.PeerId, StringComparer.Ordinal)];
                    if (servers.Count == 0)
                    {
                        _blocks.Remove((modelId, block));
                    }
                }

                result[i] = new BlockServers(block, live);
            }
        }

        return result;
    }

    /// <summary>
    /// The model index: every model with an unexpired entry, ordered by id (ordinal). When servers disagree on a model's
    /// block count, the count most of them announce wins (the larger on a tie), as in the DHT.
    /// </summary>
    internal SwarmModelInfo[] GetModels()
    {
        var now = TimeProvider.GetUtcNow();
        var models = new List<SwarmModelInfo>();
        lock (_gate)
        {
            foreach (var (modelId, entries) in _models)
            {
                DropExpired(entries, e => e.ExpiresAt, now);
                if (entries.Count > 0)
                {
                    var blockCount = entries.Values
                        .GroupBy(e => e.BlockCount)
                        .OrderByDescending(g => g.Count())
                        .ThenByDescending(g => g.Key)
                        .First().Key;
                    models.Add(new SwarmModelInfo(modelId, blockCount, entries.Count));
                }
            }

            foreach (var model in _models.Where(m => m.Value.Count == 0).Select(m => m.Key).ToArray())
            {
                _models.Remove(model);
            }
        }

        return [.. models.OrderBy(m => m.ModelId, StringComparer.Ordinal)];
    }

    private static void DropExpired<T>(Dictionary<string, T> byPeer, Func<T, DateTimeOffset> expiresAt, DateTimeOffset now)
    {
        foreach (var (peer, entry) in byPeer)
        {
            // Gone at its expiration, not after it (the DHT's rule).
            if (expiresAt(entry) <= now)
            {
                byPeer.Remove(peer);
            }
        }
    }
}
