using Petals.Discovery;
using Petals.Models;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>
/// Several real <see cref="DhtNode"/>s over one <see cref="MemoryTransport"/>, each with a <see cref="DhtPeerDiscovery"/>:
/// node 0 is the client's, the others announce as test servers (each announcing peer is its own node, as a server is).
/// </summary>
internal sealed class DiscoverySwarm : IAsyncDisposable
{
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static readonly Lock PoolGate = new();
    private static readonly List<PeerIdentity> Pool = [];

    private DiscoverySwarm(TimeProvider time) => Time = time;

    public TimeProvider Time { get; }

    public MemoryTransport Transport { get; } = new();

    public List<DhtNode> Nodes { get; } = [];

    public List<DhtPeerDiscovery> Peers { get; } = [];

    /// <summary>The client's discovery (node 0).</summary>
    public DhtPeerDiscovery Client => Peers[0];

    /// <summary>Starts <paramref name="count"/> nodes, each bootstrapped from node 0, on <paramref name="time"/>.</summary>
    public static async Task<DiscoverySwarm> StartAsync(int count, TimeProvider time, CancellationToken ct)
    {
        var swarm = new DiscoverySwarm(time);
        try
        {
            var prefix = Guid.NewGuid().ToString("N")[..8];
            for (var i = 0; i < count; i++)
            {
                var node = new DhtNode(Identity(i), timeProvider: time);
                swarm.Nodes.Add(node);
                await node.StartAsync(swarm.Transport, PeerAddress.Parse($"mem://dht-{prefix}-{i}"), ct).WaitAsync(Bound, ct);
                if (i > 0)
                {
                    Assert.Equal(1, await node.BootstrapAsync([swarm.Nodes[0].LocalAddress], ct).WaitAsync(Bound, ct));
                }

                swarm.Peers.Add(new DhtPeerDiscovery(node, time));
            }

            return swarm;
        }
        catch
        {
            await swarm.DisposeAsync();
            throw;
        }
    }

    /// <summary>A process-wide pool of identities; index i is always the same key.</summary>
    public static PeerIdentity Identity(int index)
    {
        lock (PoolGate)
        {
            while (Pool.Count <= index)
            {
                Pool.Add(PeerIdentity.Generate());
            }

            return Pool[index];
        }
    }

    /// <summary>What test server <paramref name="peer"/> announces for <paramref name="span"/>.</summary>
    public ServerInfo Info(int peer, BlockRange span, ServerState state = ServerState.Online, double throughput = 100, PeerAddress? address = null) => new()
    {
        PeerId = Peers[peer].LocalPeerId,
        Address = address ?? PeerAddress.Parse($"mem://server-{peer}"),
        State = state,
        Span = span,
        Throughput = throughput,
        CacheTokensLeft = 4096,
        Version = "test",
        PublicName = $"server {peer}",
    };

    /// <summary>Announces <paramref name="info"/> from its peer's node; asserts every block was stored.</summary>
    public async Task AnnounceAsync(string modelId, int blockCount, ServerInfo info, TimeSpan? ttl = null, CancellationToken ct = default)
    {
        var peer = Peers.Single(p => p.LocalPeerId == info.PeerId);
        var stored = await peer.AnnounceAsync(modelId, blockCount, info, ttl ?? TimeSpan.FromMinutes(5), ct).WaitAsync(Bound, ct);
        Assert.Equal(Math.Min(info.Span.End, blockCount) - info.Span.Start, stored);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            await node.DisposeAsync().AsTask().WaitAsync(Bound);
        }
    }
}
