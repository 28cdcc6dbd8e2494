using Petals.Client;
using Petals.Execution;
using Petals.Models;
using Petals.Server;
using Petals.Tests.Generation;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Tests.Client;

/// <summary>Block servers over one random model, each with its own span, listening on one transport (peer ids <c>server-0</c>, <c>server-1</c>, …).</summary>
internal sealed class Swarm : IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public const string ModelId = "random-test-model";

    private readonly List<ITransportListener> _listeners = [];
    private readonly List<IBlockExecutor> _executors = [];

    private Swarm(ITransport transport) => Transport = transport;

    public ITransport Transport { get; }

    public List<BlockServer> Servers { get; } = [];

    public List<PeerAddress> Addresses { get; } = [];

    public static Task<Swarm> StartAsync(RandomModelFixture fixture, ITransport transport, BlockRange[] spans, Action<BlockServerOptions>? configure = null) =>
        StartAsync(span => RandomModelFixture.Factory.Create(fixture.Weights, span), transport, spans, configure is null ? null : (_, o) => configure(o));

    /// <summary>Servers over executors made by <paramref name="create"/> for each span; <paramref name="configure"/> gets each server's index.</summary>
    public static async Task<Swarm> StartAsync(Func<BlockRange, IBlockExecutor> create, ITransport transport, BlockRange[] spans, Action<int, BlockServerOptions>? configure = null)
    {
        var swarm = new Swarm(transport);
        for (var i = 0; i < spans.Length; i++)
        {
            var executor = create(spans[i]);
            swarm._executors.Add(executor);
            var options = new BlockServerOptions { Blocks = spans[i], ModelId = ModelId, PeerId = $"server-{i}" };
            configure?.Invoke(i, options);
            var server = new BlockServer(executor, options);
            var bind = transport is TcpTransport ? PeerAddress.Parse("tcp://127.0.0.1:0") : PeerAddress.Parse($"mem://server-{i}-{Guid.NewGuid():N}");
            var listener = await transport.ListenAsync(bind, Ct);
            swarm._listeners.Add(listener);
            await server.StartAsync(listener, Ct);
            swarm.Servers.Add(server);
            swarm.Addresses.Add(listener.LocalAddress);
        }

        return swarm;
    }

    public Task<RemoteTransformerBlocks> ConnectAsync(RemoteSequenceOptions? options = null) =>
        RemoteTransformerBlocks.ConnectAsync(Transport, Addresses, Servers[0].Config, ModelId, options, Ct).WaitAsync(Bound, Ct);

    /// <summary>The announcement of server <paramref name="index"/> as a discovery would give it: its peer id, address and span.</summary>
    public Petals.Discovery.ServerInfo Info(int index) => new()
    {
        PeerId = Servers[index].Options.PeerId,
        Address = Addresses[index],
        State = Petals.Discovery.ServerState.Online,
        Span = Servers[index].Blocks,
    };

    /// <summary>Shuts server <paramref name="index"/> down: its connections close and its listener stops accepting.</summary>
    public async Task StopAsync(int index)
    {
        await Servers[index].DisposeAsync();
        await _listeners[index].DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var server in Servers)
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
