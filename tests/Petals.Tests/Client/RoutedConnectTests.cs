using Petals.Client;
using Petals.Discovery;
using Petals.Execution;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Routing;
using Petals.Server;
using Petals.Tensors;
using Petals.Testing;
using Petals.Testing.Time;
using Petals.Testing.Transport;
using Petals.Tests.Generation;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>
/// Connecting through discovery with the router: real block servers behind shaped in-memory links (each server's
/// listener adds its own round-trip latency), announced in a real in-memory DHT, pinged and routed by the sequence manager.
/// </summary>
public sealed class RoutedConnectTests
{
    private const string ModelId = "random-test-model";
    private static readonly TimeSpan Bound = DiscoverySwarm.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task The_fastest_chain_is_chosen_from_measured_latencies(bool wholeSpanServerIsSlow)
    {
        // Server 1 serves 0:4 alone; servers 2 and 3 serve 0:2 and 2:4. All announce the same throughput, so only the
        // measured round trips decide: 600 ms against 5 ms costs far more than the extra hop of the two-server chain.
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(4, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        var slow = TimeSpan.FromMilliseconds(600);
        var fast = TimeSpan.FromMilliseconds(5);
        await servers.StartAsync(1, new BlockRange(0, 4), wholeSpanServerIsSlow ? slow : fast);
        await servers.StartAsync(2, new BlockRange(0, 2), wholeSpanServerIsSlow ? fast : slow);
        await servers.StartAsync(3, new BlockRange(2, 4), wholeSpanServerIsSlow ? fast : slow);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);

        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);

        var rtts = sequence.MeasuredRtts;
        Assert.Equal(3, rtts.Count);
        var rtt1 = rtts[swarm.Peers[1].LocalPeerId];
        var rtt2 = rtts[swarm.Peers[2].LocalPeerId];

        // Only the server's side of each link is shaped, so a ping sees half the configured round trip (its replies' delay).
        var slowServer = wholeSpanServerIsSlow ? rtt1 : rtt2;
        var fastServer = wholeSpanServerIsSlow ? rtt2 : rtt1;
        Assert.True(slowServer >= slow / 2 && slowServer > fastServer, $"server 1 measured {rtt1}, server 2 {rtt2}");
        if (wholeSpanServerIsSlow)
        {
            Assert.Equal([swarm.Peers[2].LocalPeerId, swarm.Peers[3].LocalPeerId], remote.Spans.Select(s => s.PeerId));
            Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 4)], remote.Spans.Select(s => s.Blocks));
        }
        else
        {
            Assert.Equal([swarm.Peers[1].LocalPeerId], remote.Spans.Select(s => s.PeerId));
            Assert.Equal([new BlockRange(0, 4)], remote.Spans.Select(s => s.Blocks));
        }

        await AssertForwardEqualsLocalAsync(fixture, remote);
    }

    [Fact]
    public async Task Overlapping_spans_are_used_as_sub_ranges_and_generation_equals_local()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: true, layers: 5);
        await using var swarm = await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 3), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(2, 5), TimeSpan.Zero);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 5);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);

        // Whole spans cannot tile 0:5 (they overlap on block 2): the router splits.
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);

        Assert.Equal([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        var split = remote.Spans[0].Blocks.End;
        Assert.True(split is 2 or 3, $"the route splits at block {split}");
        Assert.Equal([new BlockRange(0, split), new BlockRange(split, 5)], remote.Spans.Select(s => s.Blocks));

        using var remoteModel = new CausalLanguageModel(LanguageModelHead.Load(fixture.Weights), remote, tokenizer: null);
        using var localModel = fixture.CreateModel();
        var options = new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [] };
        int[] prompt = [3, 14, 15, 9, 2];
        var expected = await localModel.GenerateAsync(prompt, options, Ct).ToListAsync(Ct);
        var actual = await remoteModel.GenerateAsync(prompt, options, Ct).ToListAsync(Ct);
        Assert.Equal(expected, actual);

        // Both servers really ran their segments.
        Assert.All(servers.Running, s => Assert.True(s.GetStatistics().InferenceSteps > 0));
    }

    [Fact]
    public async Task A_banned_server_is_avoided_while_another_covers_its_blocks_and_used_when_none_does()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(4, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero); // the best: one hop for everything
        await servers.StartAsync(2, new BlockRange(0, 2), TimeSpan.FromMilliseconds(50));
        await servers.StartAsync(3, new BlockRange(2, 4), TimeSpan.FromMilliseconds(50));
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        var best = swarm.Peers[1].LocalPeerId;

        await using (var unbanned = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct))
        {
            Assert.Equal([best], unbanned.Spans.Select(s => s.PeerId));
        }

        sequence.Health.ReportFailure(best, PeerFailureKind.ConnectionLost);
        Assert.Contains(best, sequence.BannedPeers);
        await using (var avoiding = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct))
        {
            Assert.Equal([swarm.Peers[2].LocalPeerId, swarm.Peers[3].LocalPeerId], avoiding.Spans.Select(s => s.PeerId));
            await AssertForwardEqualsLocalAsync(fixture, avoiding);
        }

        // Banning server 3 too leaves blocks 2:4 to banned servers only: the router falls back to one of them.
        sequence.Health.ReportFailure(swarm.Peers[3].LocalPeerId, PeerFailureKind.ConnectionLost);
        var route = sequence.RouteInference(1, 16);
        Assert.All(route.Where(s => s.Blocks.Start < 2), s => Assert.NotEqual(best, s.Server.PeerId));
        Assert.Contains(route, s => s.Blocks.End == 4 && sequence.BannedPeers.Contains(s.Server.PeerId));

        // A route that connects clears the bans of its servers.
        await using (var fallback = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct))
        {
            Assert.DoesNotContain(fallback.Spans[^1].PeerId, sequence.BannedPeers);
        }
    }

    [Fact]
    public async Task A_server_that_fails_to_connect_is_banned_and_the_model_rerouted_around_it()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(4, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 3), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(1, 4), TimeSpan.Zero);

        // Announced for every block with a huge throughput, but nothing listens there.
        var dead = swarm.Info(3, new BlockRange(0, 4), throughput: 1e6, address: PeerAddress.Parse($"mem://dead-{Guid.NewGuid():N}"));
        await swarm.AnnounceAsync(ModelId, 4, dead, ct: Ct);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Equal([dead.PeerId], sequence.RouteInference(1, 0).Select(s => s.Server.PeerId));

        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        Assert.Equal(0, remote.Spans[0].Blocks.Start);
        Assert.Equal(remote.Spans[0].Blocks.End, remote.Spans[1].Blocks.Start);
        Assert.Equal(4, remote.Spans[1].Blocks.End);
        Assert.Equal([dead.PeerId], sequence.BannedPeers);
        await AssertForwardEqualsLocalAsync(fixture, remote);
    }

    [Fact]
    public async Task Blocked_peers_of_the_router_options_are_never_used_and_named_when_nothing_is_left()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 2), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(0, 2), TimeSpan.FromMilliseconds(100));
        var options = new SwarmSequenceOptions();
        options.Router.BlockedPeers.Add(swarm.Peers[1].LocalPeerId);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 2, options);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        await using (var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct))
        {
            Assert.Equal([swarm.Peers[2].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        }

        var error = Assert.Throws<RemoteChainException>(() => sequence.RouteInference(1, 0, new HashSet<string> { swarm.Peers[2].LocalPeerId }));
        Assert.StartsWith($"no online server covers blocks 0:2 of model {ModelId}", error.Message, StringComparison.Ordinal);
        Assert.Contains($"{swarm.Peers[1].LocalPeerId[..8]}… (blocked)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Background_refreshes_ping_again_so_a_server_that_appears_later_gets_measured()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        var time = new ManualTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        await using var swarm = await DiscoverySwarm.StartAsync(3, time, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4, new SwarmSequenceOptions { RefreshInterval = TimeSpan.FromSeconds(30) }, time);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Empty(await sequence.PingAsync(swarm.Transport, "client-pinger", Ct).WaitAsync(Bound, Ct));
        Assert.Equal([swarm.Peers[1].LocalPeerId], sequence.MeasuredRtts.Keys);

        await servers.StartAsync(2, new BlockRange(0, 4), TimeSpan.Zero);
        time.Advance(TimeSpan.FromSeconds(30));
        var deadline = DateTime.UtcNow + Bound;
        while (!sequence.MeasuredRtts.ContainsKey(swarm.Peers[2].LocalPeerId))
        {
            Assert.True(DateTime.UtcNow < deadline, "the server announced later was never pinged");
            await Task.Delay(10, Ct);
        }
    }

    [Fact]
    public async Task Route_inference_rejects_bad_session_sizes()
    {
        await using var swarm = await DiscoverySwarm.StartAsync(1, TimeProvider.System, Ct);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 2);
        Assert.Equal("batchSize", Assert.Throws<ArgumentOutOfRangeException>(() => sequence.RouteInference(0, 8)).ParamName);
        Assert.Equal("maxLength", Assert.Throws<ArgumentOutOfRangeException>(() => sequence.RouteInference(1, -1)).ParamName);
    }

    private static async Task AssertForwardEqualsLocalAsync(RandomModelFixture fixture, RemoteTransformerBlocks remote)
    {
        using var local = fixture.CreateBlocks();
        var input = Enumerable.Range(0, 3 * fixture.Config.HiddenSize).Select(i => (float)Math.Sin(i)).ToArray();
        var theirs = input.ToArray();
        var ours = input.ToArray();
        await using (var session = await remote.OpenSessionAsync(1, 8, Ct))
        {
            await session.ForwardAsync(theirs, 3, Ct).AsTask().WaitAsync(Bound, Ct);
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
}
