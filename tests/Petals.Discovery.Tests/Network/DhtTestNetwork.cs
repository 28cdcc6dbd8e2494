using Petals.Testing.Time;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Discovery.Tests.Network;

/// <summary>Many <see cref="DhtNode"/>s in one process over a <see cref="MemoryTransport"/> and one manual clock.</summary>
internal sealed class DhtTestNetwork : IAsyncDisposable
{
    private static readonly Lock PoolGate = new();
    private static readonly List<PeerIdentity> Pool = [];
    private int _next;

    /// <summary>The identity puzzle's difficulty in test networks (the default's work per identity would dominate a 100-node test).</summary>
    public const int TestPuzzleDifficulty = 8;

    public DhtTestNetwork(DhtNodeOptions? options = null, ManualTimeProvider? time = null)
    {
        options ??= DhtNodeOptions.Default;
        Options = options.PuzzleDifficulty == DhtNodeOptions.Default.PuzzleDifficulty ? options with { PuzzleDifficulty = TestPuzzleDifficulty } : options;
        Time = time ?? new(DhtTestKit.Start);
    }

    public static TimeSpan Bound { get; } = TimeSpan.FromSeconds(60);

    public DhtNodeOptions Options { get; }

    public MemoryTransport Transport { get; } = new();

    public ManualTimeProvider Time { get; }

    public List<DhtNode> Nodes { get; } = [];

    public IEnumerable<DhtNode> Running => Nodes.Where(n => n.IsRunning);

    /// <summary>A process-wide pool of identities (key generation dominates otherwise); index i is always the same key.</summary>
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

    /// <summary>The pooled identity with id <paramref name="id"/>, or null.</summary>
    public static PeerIdentity? FindPooled(NodeId id)
    {
        lock (PoolGate)
        {
            return Pool.FirstOrDefault(i => i.NodeId == id);
        }
    }

    /// <summary>Starts a node at mem://dht-N and bootstraps it from <paramref name="bootstrap"/> (if any).</summary>
    public async Task<DhtNode> AddAsync(DhtNode? bootstrap, CancellationToken cancellationToken)
    {
        var index = _next++;
        var node = new DhtNode(Identity(index), Options, Time);
        Nodes.Add(node);
        await node.StartAsync(Transport, PeerAddress.Parse($"mem://dht-{index}"), cancellationToken).WaitAsync(Bound, cancellationToken);
        if (bootstrap is not null)
        {
            var answered = await node.BootstrapAsync([bootstrap.LocalAddress], cancellationToken).WaitAsync(Bound, cancellationToken);
            Assert.Equal(1, answered);
        }

        await QuiesceAsync(Nodes, cancellationToken);
        return node;
    }

    /// <summary>
    /// Waits (bounded) until no node has an address verification in flight: a requester enters a routing table only
    /// after its PING back is answered, in the background, so a test that counts or cuts waits for that first.
    /// </summary>
    public static async Task QuiesceAsync(IEnumerable<DhtNode> nodes, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (nodes.Any(n => n.IsRunning && n.PendingVerifications > 0))
        {
            Assert.True(DateTime.UtcNow < deadline, "Address verifications were still in flight after the bound.");
            await Task.Delay(5, cancellationToken);
        }
    }

    /// <summary>Builds a network of <paramref name="count"/> nodes, each bootstrapped from a random earlier one.</summary>
    public async Task BuildAsync(int count, Random random, CancellationToken cancellationToken)
    {
        var first = Nodes.Count == 0 ? await AddAsync(null, cancellationToken) : null;
        var existing = Running.ToList();
        for (var i = first is null ? 0 : 1; i < count; i++)
        {
            existing.Add(await AddAsync(existing[random.Next(existing.Count)], cancellationToken));
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            await node.DisposeAsync().AsTask().WaitAsync(Bound);
        }
    }
}
