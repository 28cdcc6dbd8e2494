using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Petals.Backends.Cpu;
using Petals.Discovery;
using Petals.Execution;
using Petals.Formats;
using Petals.Models;
using Petals.Server;
using Petals.Testing;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Server.Http.Tests.Health;

/// <summary>
/// A real swarm on 127.0.0.1: a bootstrap DHT node and block servers of the tiny model over TCP, each announcing through
/// its own DHT node, with a per-server announcement time to live; and the health monitor (a real Kestrel server) reading
/// it through a DHT node of its own.
/// </summary>
internal sealed class HealthSwarm : IAsyncDisposable
{
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private readonly List<DhtNode> _nodes = [];
    private readonly List<PeerIdentity> _identities = [];
    private readonly List<DhtNode?> _serverNodes = [];
    private readonly List<DhtPeerDiscovery> _announcers = [];
    private readonly List<ITransportListener?> _listeners = [];
    private readonly List<IBlockExecutor> _executors = [];
    private readonly List<BlockRange> _spans = [];
    private readonly List<BlockServer?> _servers = [];
    private IModelWeights? _weights;
    private WebApplication? _app;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public string ModelId { get; private set; } = string.Empty;

    public int BlockCount => _weights!.Config.NumLayers;

    public List<string> PeerIds { get; } = [];

    /// <summary>The monitor's base address, e.g. <c>http://127.0.0.1:40123</c>.</summary>
    public Uri BaseAddress { get; private set; } = null!;

    public HttpClient Http { get; } = new() { Timeout = Bound };

    internal Petals.Server.Http.Health.SwarmHealthMonitor Monitor => _app!.Services.GetRequiredService<Petals.Server.Http.Health.SwarmHealthMonitor>();

    /// <param name="spans">The servers' spans.</param>
    /// <param name="timesToLive">Per server, its announcement's time to live (default 5 minutes).</param>
    /// <param name="refresh">The monitor's refresh interval.</param>
    public static async Task<HealthSwarm> StartAsync(BlockRange[] spans, TimeSpan[]? timesToLive = null, TimeSpan? refresh = null)
    {
        var swarm = new HealthSwarm();
        try
        {
            var transport = new TcpTransport().WithMultiplexing();
            swarm._weights = ModelLoader.Open(TestData.Stories260KGguf);
            swarm.ModelId = ModelIdentity.Compute(TestData.Stories260KGguf, swarm._weights.Config);
            var bootstrap = (await swarm.StartNodeAsync(transport, null)).LocalAddress;
            var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 });
            for (var i = 0; i < spans.Length; i++)
            {
                var node = await swarm.StartNodeAsync(transport, bootstrap);
                swarm._serverNodes.Add(node);
                swarm._announcers.Add(new DhtPeerDiscovery(node));
                var executor = factory.Create(swarm._weights, spans[i]);
                swarm._executors.Add(executor);
                var server = new BlockServer(executor, new BlockServerOptions { Blocks = spans[i], ModelId = swarm.ModelId, PeerId = node.Id.ToString() });
                var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
                swarm._listeners.Add(listener);
                await server.StartAsync(listener, Ct);
                swarm._servers.Add(server);
                swarm.PeerIds.Add(node.Id.ToString());
                swarm._spans.Add(spans[i]);
                await swarm.AnnounceAsync(i, ServerState.Online, timesToLive?[i] ?? TimeSpan.FromMinutes(5), listener.LocalAddress);
            }

            var reader = await swarm.StartNodeAsync(transport, bootstrap);
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            builder.Services.AddSingleton<IPeerDiscovery>(new DhtPeerDiscovery(reader));
            builder.Services.AddPetalsHealthMonitor(o => o.RefreshInterval = refresh ?? TimeSpan.FromMilliseconds(500));
            swarm._app = builder.Build();
            swarm._app.MapPetalsHealthMonitor();
            await swarm._app.StartAsync(Ct);
            swarm.BaseAddress = new Uri(swarm._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            swarm.Http.BaseAddress = swarm.BaseAddress;
            return swarm;
        }
        catch
        {
            await swarm.DisposeAsync();
            throw;
        }
    }

    /// <summary>Announces server <paramref name="server"/> again, in <paramref name="state"/>.</summary>
    public async Task AnnounceAsync(int server, ServerState state, TimeSpan timeToLive, PeerAddress address)
    {
        var info = new ServerInfo
        {
            PeerId = PeerIds[server],
            Address = address,
            State = state,
            Span = _spans[server],
            Throughput = 250,
            ThroughputMethod = "given",
            CacheTokensLeft = 4096 - server,
            Version = "health-test",
            PublicName = $"server-{server}",
            Quantization = "none",
            Adapters = server == 0 ? ["chat"] : [],
            NextServerRtts = new Dictionary<string, TimeSpan> { ["00ff"] = TimeSpan.FromMilliseconds(1.5) },
        };
        var stored = await _announcers[server].AnnounceAsync(ModelId, BlockCount, info, timeToLive, Ct).WaitAsync(Bound, Ct);
        Assert.Equal(info.Span.Count, stored);
    }

    /// <summary>The address server <paramref name="server"/> listens on.</summary>
    public PeerAddress AddressOf(int server) => _listeners[server]!.LocalAddress;

    /// <summary>Kills server <paramref name="server"/>: its block server, listener and DHT node stop with no last announcement.</summary>
    public async Task KillAsync(int server)
    {
        await _servers[server]!.DisposeAsync();
        _servers[server] = null;
        await _listeners[server]!.DisposeAsync();
        _listeners[server] = null;
        var node = _serverNodes[server]!;
        _serverNodes[server] = null;
        _nodes.Remove(node);
        await node.DisposeAsync().AsTask().WaitAsync(Bound, Ct);
    }

    /// <summary>GET /api/v1/state, parsed.</summary>
    public async Task<JsonElement> GetStateAsync()
    {
        using var document = JsonDocument.Parse(await Http.GetStringAsync(new Uri("/api/v1/state", UriKind.Relative), Ct));
        return document.RootElement.Clone();
    }

    /// <summary>Reads the swarm until <paramref name="done"/> holds for the state, within <paramref name="within"/>.</summary>
    public async Task<JsonElement> WaitForStateAsync(Func<JsonElement, bool> done, TimeSpan within, string what)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            await Monitor.RefreshAsync(Ct);
            var state = await GetStateAsync();
            if (done(state))
            {
                return state;
            }

            Assert.True(DateTime.UtcNow < deadline, $"{what}: not seen within {within}; last state {state}");
            await Task.Delay(100, Ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync(CancellationToken.None);
            await _app.DisposeAsync();
        }

        foreach (var server in _servers)
        {
            if (server is not null)
            {
                await server.DisposeAsync();
            }
        }

        foreach (var listener in _listeners)
        {
            if (listener is not null)
            {
                await listener.DisposeAsync();
            }
        }

        foreach (var executor in _executors)
        {
            executor.Dispose();
        }

        foreach (var node in _nodes)
        {
            await node.DisposeAsync().AsTask().WaitAsync(Bound);
        }

        foreach (var identity in _identities)
        {
            identity.Dispose();
        }

        _weights?.Dispose();
    }

    private async Task<DhtNode> StartNodeAsync(ITransport transport, PeerAddress? bootstrap)
    {
        var identity = PeerIdentity.Generate();
        _identities.Add(identity);
        var node = new DhtNode(identity);
        _nodes.Add(node);
        await node.StartAsync(transport, PeerAddress.Parse("tcp://127.0.0.1:0"), Ct).WaitAsync(Bound, Ct);
        if (bootstrap is { } address)
        {
            Assert.Equal(1, await node.BootstrapAsync([address], Ct).WaitAsync(Bound, Ct));
        }

        return node;
    }
}
