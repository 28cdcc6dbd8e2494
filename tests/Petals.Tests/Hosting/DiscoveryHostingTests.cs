using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Discovery;
using Petals.Generation;
using Petals.Hosting;
using Petals.Models;
using Petals.Protocol;
using Petals.Testing;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Tests.Hosting;

/// <summary>
/// Hosted servers with <c>UseDhtDiscovery(…)</c> on the in-memory transport: they announce online under their DHT id
/// (which is also their wire peer id), measure the round trip to the next span's server, and go offline when stopped.
/// </summary>
public sealed class DiscoveryHostingTests
{
    private const string ModelId = "stories260K-f32:llama-5x64-v512";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Hosted_servers_announce_online_in_the_dht_under_their_wire_peer_id_and_offline_when_stopped()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var network = new MemoryTransport();
        using var tail = BuildHost(s => s.AddPetalsServer(o => Server(o, new(2, 5), "mem://dh-tail")).UseCpuExecutor(Threads).UseMemoryTransport(network)
            .UseDhtDiscovery(d => { d.NewSwarm = true; d.ListenAddress = "mem://dh-tail-dht"; }));
        using var head = BuildHost(s => s.AddPetalsServer(o => Server(o, new(0, 2), "mem://dh-head")).UseCpuExecutor(Threads).UseMemoryTransport(network)
            .UseDhtDiscovery(d => { d.InitialPeers.Add("mem://dh-tail-dht"); d.ListenAddress = "mem://dh-head-dht"; }));
        await tail.StartAsync(Ct).WaitAsync(Bound, Ct);
        await head.StartAsync(Ct).WaitAsync(Bound, Ct);
        var headId = head.Services.GetRequiredKeyedService<IPeerDiscovery>(PetalsServiceKeys.Server).LocalPeerId;
        var tailId = tail.Services.GetRequiredKeyedService<IPeerDiscovery>(PetalsServiceKeys.Server).LocalPeerId;
        Assert.NotEqual(headId, tailId);

        using var readerKey = PeerIdentity.Generate();
        await using var readerNode = new DhtNode(readerKey);
        await readerNode.StartAsync(network, PeerAddress.Parse("mem://dh-reader"), Ct).WaitAsync(Bound, Ct);
        Assert.Equal(1, await readerNode.BootstrapAsync([PeerAddress.Parse("mem://dh-head-dht")], Ct).WaitAsync(Bound, Ct));
        var reader = new DhtPeerDiscovery(readerNode);

        var blocks = await reader.GetServersAsync(ModelId, new BlockRange(0, 5), Ct).WaitAsync(Bound, Ct);
        for (var b = 0; b < 5; b++)
        {
            var server = Assert.Single(blocks[b].Servers);
            Assert.Equal(b < 2 ? headId : tailId, server.PeerId);
            Assert.Equal(ServerState.Online, server.State);
            Assert.Equal(PeerAddress.Parse(b < 2 ? "mem://dh-head" : "mem://dh-tail"), server.Address);
            Assert.True(server.Throughput > 0, $"block {b} throughput {server.Throughput}");
            Assert.Equal(4096, server.CacheTokensLeft);
            Assert.Equal("hosted", server.PublicName);
        }

        // The head measured its hop to the tail (the tail was online first); the tail ends the model.
        Assert.True(blocks[0].Servers[0].NextServerRtts.TryGetValue(tailId, out var rtt) && rtt > TimeSpan.Zero, "no round trip from head to tail");
        Assert.Empty(blocks[4].Servers[0].NextServerRtts);
        Assert.Contains(await reader.GetModelsAsync(Ct).WaitAsync(Bound, Ct), m => m.ModelId == ModelId && m.BlockCount == 5 && m.ServerCount == 2);

        // The wire handshake carries the announced id.
        var connection = await ProtocolConnection.ConnectAsync(network, PeerAddress.Parse("mem://dh-head"), new ConnectionPreamble("probe", ModelId), cancellationToken: Ct).WaitAsync(Bound, Ct);
        await using (connection)
        {
            Assert.Equal(headId, connection.Remote.PeerId);
        }

        // A client container finds the same servers through its own DHT node.
        var clientServices = new ServiceCollection();
        clientServices.AddPetalsClient(o => o.ModelPath = TestData.Stories260KGguf).UseMemoryTransport(network)
            .UseDhtDiscovery(d => { d.InitialPeers.Add("mem://dh-tail-dht"); d.ListenAddress = "mem://dh-client-dht"; });
        await using (var clientProvider = clientServices.BuildServiceProvider())
        {
            var clientDiscovery = clientProvider.GetRequiredKeyedService<IPeerDiscovery>(PetalsServiceKeys.Client);
            var seen = await clientDiscovery.GetServersAsync(ModelId, new BlockRange(0, 5), Ct).WaitAsync(Bound, Ct);
            Assert.Equal([headId, headId, tailId, tailId, tailId], seen.Select(b => Assert.Single(b.Servers).PeerId));
            Assert.NotEqual(headId, clientDiscovery.LocalPeerId);

            // With no Peers listed, IPetalsClient connects through the discovery and generates as the local model does.
            using var model = await clientProvider.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct);
            var remote = Assert.IsType<RemoteTransformerBlocks>(model.Blocks);
            Assert.Equal([headId, tailId], remote.Spans.Select(s => s.PeerId));
            var options = new GenerationOptions { MaxNewTokens = 12 };
            var generated = string.Concat(await model.GenerateTextAsync("Once upon a time", options, Ct).ToListAsync(Ct));
            using var local = CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 2 }));
            var expected = string.Concat(await local.GenerateTextAsync("Once upon a time", options, Ct).ToListAsync(Ct));
            Assert.False(string.IsNullOrWhiteSpace(expected));
            Assert.Equal(expected, generated);

            // The client's node ran in client mode (the client builder's default): the swarm's nodes never list it.
            await reader.GetServersAsync(ModelId, new BlockRange(0, 1), Ct).WaitAsync(Bound, Ct);
            Assert.Contains(readerNode.Routing.GetAll(), c => c.Id.ToString() == tailId);
            Assert.DoesNotContain(readerNode.Routing.GetAll(), c => c.Id.ToString() == clientDiscovery.LocalPeerId);
            var lookup = await readerNode.FindNodeAsync(NodeId.Parse(clientDiscovery.LocalPeerId), Ct).WaitAsync(Bound, Ct);
            Assert.DoesNotContain(lookup.Closest, c => c.Id.ToString() == clientDiscovery.LocalPeerId);
        }

        // A client whose options block the tail cannot route blocks 2:5, and says so.
        var blockingServices = new ServiceCollection();
        blockingServices.AddPetalsClient(o => { o.ModelPath = TestData.Stories260KGguf; o.Swarm.Router.BlockedPeers.Add(tailId); }).UseMemoryTransport(network)
            .UseDhtDiscovery(d => { d.InitialPeers.Add("mem://dh-tail-dht"); d.ListenAddress = "mem://dh-client2-dht"; });
        await using (var blockingProvider = blockingServices.BuildServiceProvider())
        {
            var refused = await Assert.ThrowsAsync<RemoteChainException>(() => blockingProvider.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct));
            Assert.StartsWith($"no online server covers blocks 2:5 of model {ModelId} (", refused.Message, StringComparison.Ordinal);
            Assert.Contains("(blocked)", refused.Message, StringComparison.Ordinal);
        }

        // A client given its own router and peer-health policy routes and reports through them.
        var router = new CountingRouter(new Petals.Client.Routing.MinLatencyRouter(new Petals.Client.Routing.RouterOptions()));
        var health = new CountingHealth(new Petals.Health.PeerHealthPolicy());
        var pluggedServices = new ServiceCollection();
        pluggedServices.AddPetalsClient(o => o.ModelPath = TestData.Stories260KGguf).UseMemoryTransport(network)
            .UseDhtDiscovery(d => { d.InitialPeers.Add("mem://dh-tail-dht"); d.ListenAddress = "mem://dh-client3-dht"; })
            .UseRouter(_ => router)
            .UsePeerHealth(_ => health);
        await using (var pluggedProvider = pluggedServices.BuildServiceProvider())
        {
            using var model = await pluggedProvider.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct);
            Assert.Equal([headId, tailId], ((RemoteTransformerBlocks)model.Blocks).Spans.Select(s => s.PeerId));
            Assert.True(router.Routes > 0, "the router was not asked");
            Assert.True(health.Successes >= 2, $"{health.Successes} successes reported");
        }

        await head.StopAsync(Ct).WaitAsync(Bound, Ct);
        var after = await reader.GetServersAsync(ModelId, new BlockRange(0, 1), Ct).WaitAsync(Bound, Ct);
        Assert.Equal(ServerState.Offline, Assert.Single(after[0].Servers).State);
        await tail.StopAsync(Ct).WaitAsync(Bound, Ct);
    }

    [Fact]
    public async Task A_server_whose_initial_peers_do_not_answer_still_serves_and_logs_the_failed_announcement()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var network = new MemoryTransport();
        var logs = new ConcurrentQueue<string>();
        using var host = BuildHost(
            s => s.AddPetalsServer(o => Server(o, new(0, 5), "mem://dh-lonely")).UseCpuExecutor(Threads).UseMemoryTransport(network)
                .UseDhtDiscovery(d => { d.InitialPeers.Add("mem://dh-nobody"); d.ListenAddress = "mem://dh-lonely-dht"; }),
            logs);
        await host.StartAsync(Ct).WaitAsync(Bound, Ct);
        Assert.True(host.Services.GetRequiredService<IPetalsServer>().IsRunning);
        Assert.Contains(logs, m => m.Contains("Joining failed; retrying next period", StringComparison.Ordinal));
        Assert.Contains(logs, m => m.Contains("Online failed; retrying next period", StringComparison.Ordinal));
        await host.StopAsync(Ct).WaitAsync(Bound, Ct);
    }

    [Fact]
    public void UseDhtDiscovery_refuses_contradictory_or_missing_bootstrap_settings_at_once()
    {
        var services = new ServiceCollection();
        var builder = services.AddPetalsServer(o => Server(o, new(0, 1), "mem://x"));
        var neither = Assert.Throws<ArgumentException>(() => builder.UseDhtDiscovery(_ => { }));
        Assert.Equal("InitialPeers", neither.ParamName);
        var both = Assert.Throws<ArgumentException>(() => builder.UseDhtDiscovery(d => { d.NewSwarm = true; d.InitialPeers.Add("tcp://127.0.0.1:1"); }));
        Assert.Equal("NewSwarm", both.ParamName);
        var bad = Assert.Throws<ArgumentException>(() => services.AddPetalsClient(o => o.ModelPath = "m").UseDhtDiscovery(d => d.InitialPeers.Add("not an address")));
        Assert.Contains("'not an address'", bad.Message, StringComparison.Ordinal);
        var hidden = Assert.Throws<ArgumentException>(() => builder.UseDhtDiscovery(d => { d.NewSwarm = true; d.ClientMode = true; }));
        Assert.Contains("ClientMode is for clients only", hidden.Message, StringComparison.Ordinal);
    }

    private static void Threads(CpuExecutorOptions options) => options.ThreadCount = 1;

    private static void Server(PetalsServerOptions options, BlockRange blocks, string address)
    {
        options.ModelPath = TestData.Stories260KGguf;
        options.Blocks = blocks;
        options.ListenAddress = address;
        options.Server.CacheTokens = 4096;
        options.Announcer.PublicName = "hosted";
    }

    private static IHost BuildHost(Action<IServiceCollection> configure, ConcurrentQueue<string>? logs = null)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        if (logs is not null)
        {
            builder.Logging.AddProvider(new QueueLoggerProvider(logs));
        }

        configure(builder.Services);
        return builder.Build();
    }

    private sealed class QueueLoggerProvider(ConcurrentQueue<string> messages) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(categoryName.StartsWith("Petals.", StringComparison.Ordinal) ? messages : null);

        public void Dispose()
        {
        }

        private sealed class Logger(ConcurrentQueue<string>? messages) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => messages is not null;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                messages?.Enqueue(formatter(state, exception));
        }
    }

    private sealed class CountingRouter(Petals.Routing.IRouter inner) : Petals.Routing.IRouter
    {
        private int _routes;

        public int Routes => Volatile.Read(ref _routes);

        public IReadOnlyList<Petals.Routing.RouteSegment> RouteInference(Petals.Routing.RouteRequest request)
        {
            Interlocked.Increment(ref _routes);
            return inner.RouteInference(request);
        }

        public IReadOnlyList<Petals.Routing.RouteSegment> RouteForward(Petals.Routing.RouteRequest request)
        {
            Interlocked.Increment(ref _routes);
            return inner.RouteForward(request);
        }
    }

    private sealed class CountingHealth(Petals.Routing.IPeerHealth inner) : Petals.Routing.IPeerHealth
    {
        private int _successes;

        public int Successes => Volatile.Read(ref _successes);

        public void ReportSuccess(string peerId)
        {
            Interlocked.Increment(ref _successes);
            inner.ReportSuccess(peerId);
        }

        public TimeSpan ReportFailure(string peerId, Petals.Routing.PeerFailureKind kind) => inner.ReportFailure(peerId, kind);

        public void ReportRoundTrip(string peerId, TimeSpan roundTrip) => inner.ReportRoundTrip(peerId, roundTrip);

        public IReadOnlySet<string> GetBannedPeers() => inner.GetBannedPeers();

        public IReadOnlyDictionary<string, TimeSpan> GetRoundTripTimes() => inner.GetRoundTripTimes();
    }
}
