using Petals.Testing.Execution;
using Petals.Execution;
using Petals.Models;
using Petals.Server;
using Petals.Testing.Transport;
using Petals.Tests.Generation;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>Block servers, each listening through its own shaped link on the swarm's memory transport, announced in the DHT.</summary>
internal sealed class ShapedServers(DiscoverySwarm swarm, IModelWeights weights, int blockCount, string modelId) : IAsyncDisposable
{
    private readonly List<ITransportListener> _listeners = [];
    private readonly List<IBlockExecutor> _executors = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public List<BlockServer> Running { get; } = [];

    /// <summary>Each started server's listener address, in start order.</summary>
    public List<PeerAddress> Addresses { get; } = [];

    public async Task StartAsync(int peer, BlockRange span, TimeSpan roundTrip, BlockServerOptions? options = null, Func<IBlockExecutor, IBlockExecutor>? wrap = null, double throughput = 100)
    {
        var executor = RandomModelFixture.Factory.Create(weights, span);
        if (wrap is not null)
        {
            executor = wrap(executor);
        }

        _executors.Add(executor);
        options ??= new BlockServerOptions();
        options.Blocks = span;
        options.ModelId = modelId;
        options.PeerId = swarm.Peers[peer].LocalPeerId;
        var server = new BlockServer(executor, options);
        var shaped = swarm.Transport.WithShaping(new NetworkShapingOptions { RoundTripLatency = roundTrip });
        var listener = await shaped.ListenAsync(PeerAddress.Parse($"mem://routed-server-{peer}-{Guid.NewGuid():N}"), Ct);
        _listeners.Add(listener);
        Addresses.Add(listener.LocalAddress);
        await server.StartAsync(listener, Ct);
        Running.Add(server);
        await swarm.AnnounceAsync(modelId, blockCount, swarm.Info(peer, span, throughput: throughput, address: listener.LocalAddress), ct: Ct);
    }

    /// <summary>Shuts the <paramref name="index"/>-th started server down (its sessions end with an error, its listener closes); its announcement stays.</summary>
    public async Task StopAsync(int index)
    {
        await Running[index].DisposeAsync();
        await _listeners[index].DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var server in Running)
        {
            await server.DisposeAsync();
        }

        foreach (var listener in _listeners)
        {
            await listener.DisposeAsync();
        }

        foreach (var executor in _executors)
        {
            executor.Dispose();
        }
    }
}
