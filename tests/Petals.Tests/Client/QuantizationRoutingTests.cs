using Petals.Client;
using Petals.Client.Routing;
using Petals.Discovery;
using Petals.Execution;
using Petals.Models;
using Petals.Routing;
using Petals.Server;
using Petals.Tensors;
using Petals.Testing.Execution;
using Petals.Tests.Generation;
using Petals.Transport;
using static Petals.Tests.Client.Routing.RoutingSwarm;

namespace Petals.Tests.Client;

/// <summary>
/// A client that requires a weight quantization (<see cref="RemoteSequenceOptions.RequiredQuantization"/>): real block
/// servers whose executors report different quantizations announce them through a real in-memory DHT (or are given by
/// address); the client routes only through the matching ones, and says precisely why when none is left. The servers
/// of the other quantizations add noise to their outputs (what another quantization does), so a chain that used one
/// would not match the local computation.
/// </summary>
public sealed class QuantizationRoutingTests
{
    private const string ModelId = "quantized-test-model";
    private static readonly TimeSpan Bound = DiscoverySwarm.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void The_router_uses_only_servers_of_the_required_quantization_even_when_others_are_faster()
    {
        var none = Peer("none-a", 0, 4, throughput: 10) with { Quantization = "none" };
        var nf4 = Peer("nf4-fast", 0, 4, throughput: 1e6) with { Quantization = "nf4" };
        var silent = Peer("silent-fast", 0, 4, throughput: 1e6); // an older server: states no quantization
        var request = new RouteRequest { Servers = [none, nf4, silent], Blocks = new BlockRange(0, 4), ModelId = "m" };
        var router = new MinLatencyRouter(new RouterOptions());

        Assert.NotEqual("none-a", Assert.Single(router.RouteInference(request)).Server.PeerId);
        Assert.Equal("none-a", Assert.Single(router.RouteInference(request with { RequiredQuantization = "none" })).Server.PeerId);
        Assert.Equal("nf4-fast", Assert.Single(router.RouteInference(request with { RequiredQuantization = "nf4" })).Server.PeerId);
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("none-a", Assert.Single(router.RouteForward(request with { RequiredQuantization = "none" })).Server.PeerId);
        }
    }

    [Fact]
    public void No_route_of_the_required_quantization_names_it_and_what_the_swarm_offers()
    {
        var request = new RouteRequest
        {
            Servers =
            [
                Peer("none-a", 0, 2) with { Quantization = "none" },
                Peer("none-b", 2, 4) with { Quantization = "none" },
                Peer("int8-a", 0, 3) with { Quantization = "int8" },
                Peer("old", 3, 4),
                Peer("nf4-off", 0, 4, state: ServerState.Offline) with { Quantization = "nf4" },
            ],
            Blocks = new BlockRange(0, 4),
            ModelId = "m",
            RequiredQuantization = "int8",
        };
        var router = new MinLatencyRouter(new RouterOptions());
        var error = Assert.Throws<RemoteChainException>(() => router.RouteInference(request));
        Assert.Equal(
            "no online server covers blocks 3:4 of model m (routing blocks 0:4; online spans: 0:3 by int8-a; required weight quantization 'int8': "
            + "the swarm offers '(not stated)' (3:4 by old), 'int8' (0:3 by int8-a), 'none' (0:2 by none-a, 2:4 by none-b))",
            error.Message);
        Assert.Equal(error.Message, Assert.Throws<RemoteChainException>(() => router.RouteForward(request)).Message);

        error = Assert.Throws<RemoteChainException>(() => router.RouteInference(request with { Servers = [], RequiredQuantization = "q4_k" }));
        Assert.Equal("no online server covers blocks 0:4 of model m (routing blocks 0:4; online spans: none; required weight quantization 'q4_k': the swarm offers nothing online)", error.Message);
    }

    [Fact]
    public async Task A_client_requiring_a_quantization_finds_only_servers_announcing_it_through_the_dht_and_computes_as_locally()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(5, TimeProvider.System, Ct);
        await using var servers = new AnnouncedServers(swarm, fixture);
        await servers.StartAsync(peer: 1, new BlockRange(0, 2), "none", throughput: 10);
        await servers.StartAsync(peer: 2, new BlockRange(2, 4), "none", throughput: 10);
        await servers.StartAsync(peer: 3, new BlockRange(0, 4), "nf4", throughput: 1e6);
        await servers.StartAsync(peer: 4, new BlockRange(0, 4), "int8", throughput: 1e5);

        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);

        // The announcements carry what each executor reports; without a requirement the fastest (nf4) server wins.
        Assert.Equal(
            ["none", "none", "nf4", "int8"],
            new[] { 1, 2, 3, 4 }.Select(p => sequence.OnlineServers.Single(s => s.PeerId == swarm.Peers[p].LocalPeerId).Quantization));
        Assert.Equal([swarm.Peers[3].LocalPeerId], sequence.RouteInference(1, 0).Select(s => s.Server.PeerId));

        var options = new RemoteSequenceOptions { RequiredQuantization = "none", MaxRecoveryAttempts = 0 };
        await using (var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, options, Ct).WaitAsync(Bound, Ct))
        {
            Assert.Equal([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId], remote.Spans.Select(s => s.PeerId));
            Assert.All(remote.Spans, s => Assert.Equal("none", s.Info.Quantization));
            await AssertComputesAsLocallyAsync(fixture, remote);
        }

        await using (var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, new RemoteSequenceOptions { RequiredQuantization = "int8" }, Ct).WaitAsync(Bound, Ct))
        {
            Assert.Equal([swarm.Peers[4].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        }

        // The servers of other quantizations never computed for the "none" client.
        Assert.Equal(0, servers.Running[2].GetStatistics().InferenceSteps + servers.Running[2].GetStatistics().ForwardCalls);
        Assert.Equal(0, servers.Running[3].GetStatistics().InferenceSteps + servers.Running[3].GetStatistics().ForwardCalls);

        // Nobody runs q4_k: the error names the requirement and every quantization on offer with its servers.
        var error = await Assert.ThrowsAsync<RemoteChainException>(() => RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, new RemoteSequenceOptions { RequiredQuantization = "q4_k" }, Ct).WaitAsync(Bound, Ct));
        string Short(int peer) => PeerIds.Short(swarm.Peers[peer].LocalPeerId);
        Assert.Equal(
            $"no online server covers blocks 0:4 of model {ModelId} (routing blocks 0:4; online spans: none; required weight quantization 'q4_k': "
            + $"the swarm offers 'int8' (0:4 by {Short(4)}), 'nf4' (0:4 by {Short(3)}), 'none' (0:2 by {Short(1)}, 2:4 by {Short(2)}))",
            error.Message);
    }

    [Fact]
    public async Task A_server_whose_info_contradicts_its_announced_quantization_is_refused_on_connecting()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await DiscoverySwarm.StartAsync(2, TimeProvider.System, Ct);
        await using var servers = new AnnouncedServers(swarm, fixture);

        // It announces "none" by hand, but its executor (and so its info) says nf4.
        await servers.StartAsync(peer: 1, new BlockRange(0, 2), "nf4", throughput: 10, announceAs: "none");
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 2);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Equal("none", Assert.Single(sequence.OnlineServers).Quantization);

        var error = await Assert.ThrowsAsync<RemoteChainException>(() => RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, new RemoteSequenceOptions { RequiredQuantization = "none" }, Ct).WaitAsync(Bound, Ct));
        Assert.Contains($"server '{swarm.Peers[1].LocalPeerId}' at {servers.Addresses[0]} runs weights quantized as 'nf4', not the required 'none'", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, servers.Running[0].GetStatistics().InferenceSteps + servers.Running[0].GetStatistics().ForwardCalls);
    }

    [Fact]
    public async Task Servers_given_by_address_of_another_quantization_are_left_out_and_a_gap_names_the_requirement()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(4, TimeProvider.System, Ct);
        await using var servers = new AnnouncedServers(swarm, fixture, announce: false);
        await servers.StartAsync(peer: 1, new BlockRange(0, 4), "nf4", throughput: 0);
        await servers.StartAsync(peer: 2, new BlockRange(0, 2), "none", throughput: 0);
        await servers.StartAsync(peer: 3, new BlockRange(2, 4), "none", throughput: 0);

        await using (var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, servers.Addresses, fixture.Config, ModelId, new RemoteSequenceOptions { RequiredQuantization = "none", MaxRecoveryAttempts = 0 }, Ct).WaitAsync(Bound, Ct))
        {
            Assert.Equal([swarm.Peers[2].LocalPeerId, swarm.Peers[3].LocalPeerId], remote.Spans.Select(s => s.PeerId));
            await AssertComputesAsLocallyAsync(fixture, remote);
        }

        Assert.Equal(0, servers.Running[0].GetStatistics().InferenceSteps + servers.Running[0].GetStatistics().ForwardCalls);

        var error = await Assert.ThrowsAsync<RemoteChainException>(() => RemoteTransformerBlocks.ConnectAsync(swarm.Transport, servers.Addresses, fixture.Config, ModelId, new RemoteSequenceOptions { RequiredQuantization = "int8" }, Ct).WaitAsync(Bound, Ct));
        Assert.StartsWith("The servers cannot run the model's 4 blocks: no server with the required weight quantization 'int8' covers blocks 0:4 (left out: ", error.Message, StringComparison.Ordinal);
        Assert.Contains($"server '{swarm.Peers[1].LocalPeerId}' at {servers.Addresses[0]} runs weights quantized as 'nf4', not the required 'int8'", error.Message, StringComparison.Ordinal);
        Assert.Contains($"server '{swarm.Peers[2].LocalPeerId}' at {servers.Addresses[1]} runs weights quantized as 'none', not the required 'int8'", error.Message, StringComparison.Ordinal);
        Assert.Contains($"{servers.Addresses[0]} = 0:4 (nf4)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Recovery_replaces_a_failed_server_only_with_one_of_the_required_quantization()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(4, TimeProvider.System, Ct);
        await using var servers = new AnnouncedServers(swarm, fixture);
        await servers.StartAsync(peer: 1, new BlockRange(0, 4), "none", throughput: 10);
        await servers.StartAsync(peer: 2, new BlockRange(0, 4), "nf4", throughput: 1e6);
        await servers.StartAsync(peer: 3, new BlockRange(0, 4), "none", throughput: 10);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        var options = new RemoteSequenceOptions { RequiredQuantization = "none", MaxRecoveryAttempts = 3, RecoveryBackoff = TimeSpan.FromMilliseconds(1) };
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, options, Ct).WaitAsync(Bound, Ct);
        var first = Assert.Single(remote.Spans).PeerId == swarm.Peers[1].LocalPeerId ? 0 : 2;

        using var local = fixture.CreateBlocks();
        await using var session = await remote.OpenSessionAsync(1, 16, Ct);
        await using var localSession = await local.OpenSessionAsync(1, 16, Ct);
        async Task StepAsync(int tokens, int seed)
        {
            var input = Enumerable.Range(0, tokens * fixture.Config.HiddenSize).Select(i => (float)Math.Sin(i + seed)).ToArray();
            var theirs = input.ToArray();
            await session.ForwardAsync(theirs, tokens, Ct).AsTask().WaitAsync(Bound, Ct);
            await localSession.ForwardAsync(input, tokens, Ct);
            for (var i = 0; i < input.Length; i++)
            {
                Assert.True(Math.Abs(input[i] - theirs[i]) <= 1e-5f, $"step {seed} value {i}: {input[i]} vs {theirs[i]}");
            }
        }

        await StepAsync(2, 0);
        var nf4Connections = servers.Running[1].GetStatistics().ConnectionsAccepted; // the client's pings
        await servers.StopAsync(first);
        await StepAsync(1, 1); // replayed onto the other "none" server, never the (faster) nf4 one
        Assert.Equal(1, remote.Recoveries);
        Assert.Equal(nf4Connections, servers.Running[1].GetStatistics().ConnectionsAccepted); // not even tried: routed around
        Assert.Equal(swarm.Peers[first == 0 ? 3 : 1].LocalPeerId, Assert.Single(remote.Spans).PeerId);

        await servers.StopAsync(first == 0 ? 2 : 0);
        await Assert.ThrowsAsync<RemoteChainException>(() => StepAsync(1, 2));
        Assert.Equal(0, servers.Running[1].GetStatistics().InferenceSteps + servers.Running[1].GetStatistics().ForwardCalls);
    }

    /// <summary>Runs three positions through <paramref name="remote"/> and through the local blocks; they agree within fp32 rounding.</summary>
    private static async Task AssertComputesAsLocallyAsync(RandomModelFixture fixture, RemoteTransformerBlocks remote)
    {
        using var local = fixture.CreateBlocks();
        var input = Enumerable.Range(0, 3 * fixture.Config.HiddenSize).Select(i => (float)Math.Sin(i)).ToArray();
        var theirs = input.ToArray();
        var ours = input.ToArray();
        await using (var session = await remote.OpenSessionAsync(1, 8, Ct))
        {
            await session.ForwardAsync(theirs, 3, Ct);
        }

        await using (var session = await local.OpenSessionAsync(1, 8, Ct))
        {
            await session.ForwardAsync(ours, 3, Ct);
        }

        for (var i = 0; i < ours.Length; i++)
        {
            Assert.True(Math.Abs(ours[i] - theirs[i]) <= 1e-5f, $"value {i}: {ours[i]} vs {theirs[i]}");
        }
    }

    /// <summary>
    /// Block servers of one random model, each executor reporting a quantization (servers that report another than
    /// "none" add noise to their outputs), announced by a real <see cref="ServerAnnouncer"/> from that report.
    /// </summary>
    private sealed class AnnouncedServers(DiscoverySwarm swarm, RandomModelFixture fixture, bool announce = true) : IAsyncDisposable
    {
        private readonly List<ITransportListener> _listeners = [];
        private readonly List<IBlockExecutor> _executors = [];
        private readonly List<ServerAnnouncer> _announcers = [];

        public List<BlockServer> Running { get; } = [];

        public List<PeerAddress> Addresses { get; } = [];

        public async Task StartAsync(int peer, BlockRange span, string quantization, double throughput, string? announceAs = null)
        {
            IBlockExecutor inner = RandomModelFixture.Factory.Create(fixture.Weights, span);
            if (quantization != "none")
            {
                inner = new LyingBlockExecutor(inner, seed: peer) { Kind = LieKind.Noise, LieOnForwards = true };
            }

            var executor = new WeightsInfoExecutor(inner, quantization);
            _executors.Add(executor);
            var server = new BlockServer(executor, new BlockServerOptions { Blocks = span, ModelId = ModelId, PeerId = swarm.Peers[peer].LocalPeerId });
            var listener = await swarm.Transport.ListenAsync(PeerAddress.Parse($"mem://quantized-server-{peer}-{Guid.NewGuid():N}"), Ct);
            _listeners.Add(listener);
            await server.StartAsync(listener, Ct);
            Running.Add(server);
            Addresses.Add(listener.LocalAddress);
            if (!announce)
            {
                return;
            }

            if (announceAs is not null)
            {
                await swarm.AnnounceAsync(ModelId, fixture.Config.NumLayers, swarm.Info(peer, span, throughput: throughput, address: listener.LocalAddress) with { Quantization = announceAs }, ct: Ct);
                return;
            }

            var announcer = new ServerAnnouncer(swarm.Peers[peer], swarm.Transport, ModelId, fixture.Config.NumLayers, span) { Throughput = throughput };
            _announcers.Add(announcer);
            Assert.True(await announcer.AnnounceOnlineAsync(server, Ct).WaitAsync(Bound, Ct));
        }

        /// <summary>Stops server <paramref name="index"/> without announcing it offline (a server that died).</summary>
        public async Task StopAsync(int index)
        {
            await Running[index].DisposeAsync();
            await _listeners[index].DisposeAsync();
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var announcer in _announcers)
            {
                await announcer.DisposeAsync();
            }

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
}
