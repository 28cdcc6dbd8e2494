using Petals.Client;
using Petals.Discovery;
using Petals.Models;
using Petals.Routing;
using Petals.Server;
using Petals.Tensors;
using Petals.Testing.Transport;
using Petals.Tests.Generation;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>
/// A random model served by memory block servers (<see cref="Client.Swarm"/>), and the client's parts built one by one
/// over them: connection pools, and sequence managers over a <see cref="StaticPeerDiscovery"/> of chosen announcements.
/// Disposes everything it made.
/// </summary>
internal sealed class ClientRig : IAsyncDisposable
{
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private readonly List<IAsyncDisposable> _owned = [];

    private ClientRig(RandomModelFixture fixture, Swarm swarm) => (Fixture, Swarm) = (fixture, swarm);

    public RandomModelFixture Fixture { get; }

    public Swarm Swarm { get; }

    public ModelConfig Config => Fixture.Config;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Starts one server per span (peer ids <c>server-0</c>, …) of a random model of <paramref name="layers"/> blocks.</summary>
    public static async Task<ClientRig> StartAsync(int layers, BlockRange[] spans, Action<BlockServerOptions>? configure = null)
    {
        var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: layers);
        try
        {
            return new ClientRig(fixture, await Swarm.StartAsync(fixture, new MemoryTransport(), spans, configure));
        }
        catch
        {
            fixture.Dispose();
            throw;
        }
    }

    /// <summary>An announcement of a server that died without saying so: nothing listens at its address.</summary>
    public static ServerInfo Dead(string peerId, BlockRange span, double throughput) => new()
    {
        PeerId = peerId,
        Address = PeerAddress.Parse($"mem://{peerId}-{Guid.NewGuid():N}"),
        State = ServerState.Online,
        Span = span,
        Throughput = throughput,
    };

    /// <summary>Waits, polling, until <paramref name="condition"/> holds; fails with <paramref name="what"/> after <see cref="Bound"/>.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, Func<string> what)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, what());
            await Task.Delay(5, Ct);
        }
    }

    /// <summary>Waits until no server holds a connection (those refused or closed on the client's side are closed on the servers' too).</summary>
    public Task WaitForNoConnectionsAsync() =>
        WaitUntilAsync(
            () => Swarm.Servers.All(s => s.GetStatistics().ActiveConnections == 0),
            () => "connections left open: " + string.Join(", ", Swarm.Servers.Select(s => s.GetStatistics().ActiveConnections)));

    /// <summary>A pool over the swarm's transport for the model (or <paramref name="config"/>), owned by the rig.</summary>
    public ConnectionPool CreatePool(RemoteSequenceOptions? options = null, bool checkPeerIds = true, ModelConfig? config = null)
    {
        var pool = new ConnectionPool(Swarm.Transport, config ?? Config, Swarm.ModelId, options ?? new RemoteSequenceOptions(), checkPeerIds);
        _owned.Add(pool);
        return pool;
    }

    /// <summary>A started sequence manager of the model over exactly <paramref name="servers"/>, owned by the rig.</summary>
    public async Task<SwarmSequenceManager> StartSequenceAsync(IEnumerable<ServerInfo> servers, IPeerHealth? health = null)
    {
        var sequence = new SwarmSequenceManager(new StaticPeerDiscovery(Swarm.ModelId, Config.NumLayers, servers), Swarm.ModelId, Config.NumLayers, health: health);
        _owned.Add(sequence);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        return sequence;
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }

        await Swarm.DisposeAsync();
        Fixture.Dispose();
    }
}
