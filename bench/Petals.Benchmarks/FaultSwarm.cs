using System.Globalization;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Discovery;
using Petals.Execution;
using Petals.Models;
using Petals.Server;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Benchmarks;

/// <summary>
/// The fault-tolerance benchmark's swarm, all in this process: real <see cref="BlockServer"/>s on one
/// <see cref="MemoryTransport"/> behind the shaping decorator (round-trip latency and bandwidth per connection; its
/// <see cref="ShapingTransport.AbortStreams"/> injects the failures), each announced in a real in-memory DHT (one
/// <see cref="DhtNode"/> per server, one for the client; DHT traffic is not shaped) that the client's
/// <see cref="SwarmSequenceManager"/> reads. The blocks are split into <see cref="FaultTableOptions.Stages"/> equal
/// spans, each served by <see cref="FaultTableOptions.Replicas"/> servers.
/// </summary>
internal sealed class FaultSwarm : IAsyncDisposable
{
    private readonly List<DhtNode> _nodes = [];
    private readonly List<PeerIdentity> _identities = [];
    private readonly List<BlockServer> _servers = [];
    private readonly List<ITransportListener> _listeners = [];
    private readonly List<IBlockExecutor> _executors = [];

    private FaultSwarm(MemoryTransport memory, ShapingTransport shaped)
    {
        Memory = memory;
        Faults = shaped;
    }

    /// <summary>The unshaped network (the DHT runs on it).</summary>
    public MemoryTransport Memory { get; }

    /// <summary>The shaped network: the block servers listen and the clients connect on it (failures abort the clients' connections on it).</summary>
    public ShapingTransport Faults { get; }

    /// <summary>The client's view of the swarm (started).</summary>
    public SwarmSequenceManager Sequence { get; private set; } = null!;

    /// <summary>Each server's blocks and address, in start order (stage by stage).</summary>
    public List<(BlockRange Blocks, PeerAddress Address, string PeerId)> Servers { get; } = [];

    /// <summary>How many server failures were injected so far.</summary>
    public int FailuresInjected { get; private set; }

    public static async Task<FaultSwarm> StartAsync(FaultTableOptions options, IModelWeights weights, string modelId, CancellationToken cancellationToken)
    {
        var memory = new MemoryTransport();
        var shaped = memory.WithShaping(new NetworkShapingOptions
        {
            RoundTripLatency = TimeSpan.FromMilliseconds(options.RttMs),
            BandwidthBytesPerSecond = options.BandwidthMbps > 0 ? (long)(options.BandwidthMbps * 1e6 / 8) : null,
        });
        var swarm = new FaultSwarm(memory, shaped);
        try
        {
            await swarm.StartCoreAsync(options, weights, modelId, cancellationToken).ConfigureAwait(false);
            return swarm;
        }
        catch
        {
            await swarm.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task StartCoreAsync(FaultTableOptions options, IModelWeights weights, string modelId, CancellationToken cancellationToken)
    {
        var prefix = Guid.NewGuid().ToString("N")[..8];
        var client = await StartNodeAsync($"mem://ft-{prefix}-dht-client", null, cancellationToken).ConfigureAwait(false);
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = options.Threads });
        var blockCount = weights.Config.NumLayers;
        for (var stage = 0; stage < options.Stages; stage++)
        {
            var span = new BlockRange(stage * blockCount / options.Stages, (stage + 1) * blockCount / options.Stages);
            for (var replica = 0; replica < options.Replicas; replica++)
            {
                var name = string.Create(CultureInfo.InvariantCulture, $"ft-{prefix}-s{stage}r{replica}");
                var node = await StartNodeAsync($"mem://{name}-dht", client, cancellationToken).ConfigureAwait(false);
                var discovery = new DhtPeerDiscovery(node);
                var executor = factory.Create(weights, span);
                _executors.Add(executor);
                var server = new BlockServer(executor, new BlockServerOptions
                {
                    Blocks = span,
                    ModelId = modelId,
                    PeerId = discovery.LocalPeerId,
                    MaxSessionLength = Math.Max(2048, options.Lengths.Max()),
                    CacheTokens = 64L * Math.Max(2048, options.Lengths.Max()),
                });
                var listener = await Faults.ListenAsync(PeerAddress.Parse($"mem://{name}"), cancellationToken).ConfigureAwait(false);
                _listeners.Add(listener);
                await server.StartAsync(listener, cancellationToken).ConfigureAwait(false);
                _servers.Add(server);
                Servers.Add((span, listener.LocalAddress, discovery.LocalPeerId));
                var info = new ServerInfo
                {
                    PeerId = discovery.LocalPeerId,
                    Address = listener.LocalAddress,
                    State = ServerState.Online,
                    Span = span,
                    Throughput = 100,
                    CacheTokensLeft = server.CacheTokensLeft,
                    Version = "fault-table",
                    PublicName = name,
                };
                await discovery.AnnounceAsync(modelId, blockCount, info, TimeSpan.FromHours(2), cancellationToken).ConfigureAwait(false);
            }
        }

        Sequence = new SwarmSequenceManager(new DhtPeerDiscovery(client), modelId, blockCount, new SwarmSequenceOptions { RefreshInterval = TimeSpan.FromMinutes(10) });
        await Sequence.StartAsync(cancellationToken).ConfigureAwait(false);
        if (Sequence.OnlineServers.Count != Servers.Count)
        {
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"The client sees {Sequence.OnlineServers.Count} of the {Servers.Count} servers announced."));
        }
    }

    /// <summary>
    /// Makes the server at <paramref name="address"/> fail: every connection the clients hold to it is aborted at both
    /// ends (its sessions and caches are dropped); it keeps listening, as a server restarted at once would.
    /// </summary>
    public void Fail(PeerAddress address)
    {
        Faults.AbortStreams(address, "fault injected by the fault-table benchmark: the server failed");
        FailuresInjected++;
    }

    private async Task<DhtNode> StartNodeAsync(string address, DhtNode? bootstrap, CancellationToken cancellationToken)
    {
        var identity = PeerIdentity.Generate();
        _identities.Add(identity);
        var node = new DhtNode(identity);
        _nodes.Add(node);
        await node.StartAsync(Memory, PeerAddress.Parse(address), cancellationToken).ConfigureAwait(false);
        if (bootstrap is not null && await node.BootstrapAsync([bootstrap.LocalAddress], cancellationToken).ConfigureAwait(false) != 1)
        {
            throw new InvalidOperationException($"DHT node {address} could not reach the client's node.");
        }

        return node;
    }

    public async ValueTask DisposeAsync()
    {
        if (Sequence is not null)
        {
            await Sequence.DisposeAsync().ConfigureAwait(false);
        }

        foreach (var server in _servers)
        {
            await server.DisposeAsync().ConfigureAwait(false);
        }

        foreach (var listener in _listeners)
        {
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        foreach (var executor in _executors)
        {
            executor.Dispose();
        }

        foreach (var node in _nodes)
        {
            await node.DisposeAsync().ConfigureAwait(false);
        }

        foreach (var identity in _identities)
        {
            identity.Dispose();
        }
    }
}
