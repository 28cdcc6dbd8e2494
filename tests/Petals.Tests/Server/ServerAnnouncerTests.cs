using Petals.Discovery;
using Petals.Models;
using Petals.Server;
using Petals.Tensors;
using Petals.Testing.Time;
using Petals.Testing.Transport;
using Petals.Tests.Generation;
using Petals.Transport;

namespace Petals.Tests.Server;

/// <summary>
/// ServerAnnouncer over a real in-memory DHT (several <see cref="DhtNode"/>s on a <see cref="MemoryTransport"/> and a
/// manual clock), with real block servers of a random 4-block model: what a reader sees through
/// <see cref="DhtPeerDiscovery"/> at each step of a server's life.
/// </summary>
public sealed class ServerAnnouncerTests
{
    private const string Model = ServerHarness.ModelId;
    private static readonly TimeSpan Bound = ServerHarness.Bound;
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_reader_sees_joining_then_online_then_offline_with_the_servers_address_and_figures()
    {
        await using var swarm = await AnnounceSwarm.CreateAsync(6);
        await using var server = await swarm.StartServerAsync(new BlockRange(1, 3), peer: 1);
        await using var announcer = swarm.Announcer(server, new ServerAnnouncerOptions { PublicName = "lab-1", AnnounceHost = null, Version = "9.9.9" });
        var reader = swarm.Discovery(5);

        var bound = PeerAddress.Parse("mem://about-to-serve");
        Assert.True(await announcer.AnnounceJoiningAsync(bound, Ct).WaitAsync(Bound, Ct));
        var joining = await ReadAsync(reader, server.PeerId, 1);
        Assert.Equal(ServerState.Joining, joining.State);
        Assert.Equal(bound, joining.Address);
        Assert.Equal(new BlockRange(1, 3), joining.Span);
        Assert.Equal("lab-1", joining.PublicName);
        Assert.Equal("9.9.9", joining.Version);

        var measured = new ThroughputMeter().Measure(server.Executor);
        Assert.Equal(new BlockRange(1, 3), measured.Blocks);
        Assert.Equal(8, measured.Steps);
        var throughput = announcer.Throughput = measured.TokensPerSecondPerBlock;
        Assert.True(throughput > 0, $"throughput {throughput}");
        Assert.True(measured.StepTime > TimeSpan.Zero, $"step time {measured.StepTime}");
        await server.Server.StartAsync(await swarm.Transport.ListenAsync(PeerAddress.Parse("mem://served-1"), Ct), Ct);
        Assert.True(await announcer.AnnounceOnlineAsync(server.Server, Ct).WaitAsync(Bound, Ct));
        foreach (var block in new[] { 1, 2 })
        {
            var online = await ReadAsync(reader, server.PeerId, block);
            Assert.Equal(ServerState.Online, online.State);
            Assert.Equal(server.Server.LocalAddress, online.Address);
            Assert.Equal(throughput, online.Throughput, 6);
            Assert.Equal(server.Server.CacheTokensLeft, online.CacheTokensLeft);
            Assert.Equal(TensorDType.F32, online.DType);
            Assert.True(online.ExpiresAt >= swarm.Time.GetUtcNow() + Interval * 3, $"expires {online.ExpiresAt:O}");
        }

        var models = await reader.GetModelsAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Contains(models, m => m.ModelId == Model && m.BlockCount == 4);

        Assert.True(await announcer.AnnounceOfflineAsync(Ct).WaitAsync(Bound, Ct));
        var offline = await ReadAsync(reader, server.PeerId, 2);
        Assert.Equal(ServerState.Offline, offline.State);
        Assert.Equal(ServerState.Offline, announcer.State);
        var stats = announcer.GetStatistics();
        Assert.Equal(3, stats.Announcements);
        Assert.Equal(0, stats.Failures);

        // Offline is final, and an offline announcer no longer republishes.
        await Assert.ThrowsAsync<InvalidOperationException>(() => announcer.AnnounceOnlineAsync(server.Server, Ct));
        Assert.False(await announcer.AnnounceOfflineAsync(Ct));
        swarm.Time.Advance(Interval * 2);
        await Task.Delay(200, Ct);
        Assert.Equal(3, announcer.GetStatistics().Announcements);
        Assert.Equal(ServerState.Offline, (await ReadAsync(reader, server.PeerId, 1)).State);
    }

    [Fact]
    public async Task The_clock_republishes_with_later_expirations_and_the_free_cache_of_the_moment()
    {
        await using var swarm = await AnnounceSwarm.CreateAsync(5);
        await using var server = await swarm.StartServerAsync(new BlockRange(0, 2), peer: 1, listen: true);
        await using var announcer = swarm.Announcer(server, new ServerAnnouncerOptions());
        var reader = swarm.Discovery(4);
        Assert.True(await announcer.AnnounceOnlineAsync(server.Server, Ct).WaitAsync(Bound, Ct));
        var first = await ReadAsync(reader, server.PeerId, 0);
        Assert.Equal(1024, first.CacheTokensLeft);

        // A session takes cache: the next period's announcement says so, and expires later.
        using var reservation = await server.Server.Budget.ReserveAsync(300, TimeSpan.FromSeconds(1), Ct).AsTask().WaitAsync(Bound, Ct);
        swarm.Time.Advance(Interval);
        await ServerHarness.WaitUntil(() => announcer.GetStatistics().Announcements >= 2, "the first republication");
        var second = await ReadAsync(reader, server.PeerId, 0);
        Assert.Equal(724, second.CacheTokensLeft);
        Assert.Equal(ServerState.Online, second.State);
        Assert.True(second.ExpiresAt >= first.ExpiresAt + Interval, $"{second.ExpiresAt:O} is not an interval after {first.ExpiresAt:O}");

        // Periods go on; without republication the record would have expired by now (3 intervals).
        for (var period = 3; period <= 5; period++)
        {
            swarm.Time.Advance(Interval);
            var expected = period;
            await ServerHarness.WaitUntil(() => announcer.GetStatistics().Announcements >= expected, $"republication {expected}");
        }

        var later = await ReadAsync(reader, server.PeerId, 1);
        Assert.Equal(ServerState.Online, later.State);
        Assert.True(later.ExpiresAt > swarm.Time.GetUtcNow() + Interval * 2, $"expires {later.ExpiresAt:O} at {swarm.Time.GetUtcNow():O}");
        Assert.Equal(0, announcer.GetStatistics().Failures);
    }

    [Fact]
    public async Task Round_trips_to_live_next_servers_are_measured_and_a_dead_one_is_left_out()
    {
        await using var swarm = await AnnounceSwarm.CreateAsync(6);
        await using var first = await swarm.StartServerAsync(new BlockRange(0, 2), peer: 1, listen: true);
        await using var next = await swarm.StartServerAsync(new BlockRange(2, 4), peer: 2, listen: true);
        await using var dead = await swarm.StartServerAsync(new BlockRange(2, 4), peer: 3, listen: true);
        await using var firstAnnouncer = swarm.Announcer(first, new ServerAnnouncerOptions());
        await using var nextAnnouncer = swarm.Announcer(next, new ServerAnnouncerOptions());
        await using var deadAnnouncer = swarm.Announcer(dead, new ServerAnnouncerOptions());
        Assert.True(await nextAnnouncer.AnnounceOnlineAsync(next.Server, Ct).WaitAsync(Bound, Ct));
        Assert.True(await deadAnnouncer.AnnounceOnlineAsync(dead.Server, Ct).WaitAsync(Bound, Ct));

        // Crashes: stops listening without announcing offline, so its record still says online.
        await dead.Server.StopAsync(Ct).WaitAsync(Bound, Ct);
        Assert.True(await firstAnnouncer.AnnounceOnlineAsync(first.Server, Ct).WaitAsync(Bound, Ct));

        var rtts = firstAnnouncer.NextServerRtts;
        var rtt = Assert.Single(rtts);
        Assert.Equal(next.PeerId, rtt.Key);
        Assert.True(rtt.Value > TimeSpan.Zero, $"rtt {rtt.Value}");
        Assert.True(rtt.Value < Bound, $"rtt {rtt.Value}");

        var announced = await ReadAsync(swarm.Discovery(5), first.PeerId, 1);
        var published = Assert.Single(announced.NextServerRtts, r => r.Key == next.PeerId).Value;
        Assert.True((published - rtt.Value).Duration() <= TimeSpan.FromMilliseconds(1), $"published {published}, measured {rtt.Value}");
        Assert.DoesNotContain(dead.PeerId, announced.NextServerRtts.Keys);

        // The last span has no next block: nothing to measure.
        Assert.Empty(nextAnnouncer.NextServerRtts);
        Assert.Equal(1, firstAnnouncer.GetStatistics().NextServersMeasured);
    }

    [Fact]
    public async Task A_failing_discovery_is_counted_and_retried_next_period_without_throwing()
    {
        await using var swarm = await AnnounceSwarm.CreateAsync(3);
        await using var server = await swarm.StartServerAsync(new BlockRange(0, 2), peer: 1, listen: true);
        var broken = new DhtPeerDiscovery(swarm.Nodes[1], swarm.Time);
        await using var announcer = new ServerAnnouncer(broken, swarm.Transport, Model, 4, server.Span, new ServerAnnouncerOptions { TimeProvider = swarm.Time });

        // The node stops: every announcement throws inside the discovery.
        await swarm.Nodes[1].StopAsync().WaitAsync(Bound, Ct);
        Assert.False(await announcer.AnnounceOnlineAsync(server.Server, Ct).WaitAsync(Bound, Ct));
        Assert.Equal(1, announcer.GetStatistics().Failures);
        swarm.Time.Advance(Interval);
        await ServerHarness.WaitUntil(() => announcer.GetStatistics().Failures >= 2, "the retry at the next period");
        Assert.Equal(0, announcer.GetStatistics().Announcements);
        Assert.Equal(ServerState.Online, announcer.State);
    }

    [Fact]
    public async Task The_announce_host_replaces_the_listeners_host_and_the_server_must_use_the_announced_peer_id()
    {
        await using var swarm = await AnnounceSwarm.CreateAsync(3);
        await using var server = await swarm.StartServerAsync(new BlockRange(0, 2), peer: 1);
        await using var announcer = swarm.Announcer(server, new ServerAnnouncerOptions { AnnounceHost = "203.0.113.7" });
        Assert.True(await announcer.AnnounceJoiningAsync(PeerAddress.Parse("tcp://0.0.0.0:31337"), Ct).WaitAsync(Bound, Ct));
        var joining = await ReadAsync(swarm.Discovery(2), server.PeerId, 0);
        Assert.Equal(PeerAddress.Parse("tcp://203.0.113.7:31337"), joining.Address);

        // mem:// has no host to replace.
        await Assert.ThrowsAsync<ArgumentException>(() => announcer.AnnounceJoiningAsync(PeerAddress.Parse("mem://x"), Ct));

        var model = new RandomModelFixture(TensorDType.F32, tied: false);
        using var executor = RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2));
        await using var stranger = new BlockServer(executor, new BlockServerOptions { Blocks = new BlockRange(0, 2), ModelId = Model, PeerId = "someone-else" });
        await stranger.StartAsync(await swarm.Transport.ListenAsync(PeerAddress.Parse("mem://stranger"), Ct), Ct);
        var error = await Assert.ThrowsAsync<ArgumentException>(() => announcer.AnnounceOnlineAsync(stranger, Ct));
        Assert.Contains("someone-else", error.Message, StringComparison.Ordinal);
        model.Dispose();
    }

    [Fact]
    public async Task A_model_id_the_dht_cannot_key_is_refused_up_front_not_failed_in_every_announcement()
    {
        await using var swarm = await AnnounceSwarm.CreateAsync(3);
        var discovery = swarm.Discovery(1);
        var options = new ServerAnnouncerOptions { TimeProvider = swarm.Time };
        Assert.Equal(ServerInfoCodec.MaxModelIdBytes, ServerAnnouncer.MaxModelIdBytes);
        Assert.Equal(ServerInfoCodec.MaxBlockCount, ServerAnnouncer.MaxBlockCount);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ServerAnnouncer(discovery, swarm.Transport, Model, ServerAnnouncer.MaxBlockCount + 1, new BlockRange(0, 2), options));

        // 241 bytes fits the handshake (255) but not the DHT's block keys: refused at construction, naming the limit.
        var tooLong = new string('m', ServerInfoCodec.MaxModelIdBytes + 1);
        var error = Assert.Throws<ArgumentException>(() => new ServerAnnouncer(discovery, swarm.Transport, tooLong, 4, new BlockRange(0, 2), options));
        Assert.Equal("modelId", error.ParamName);
        Assert.Contains(ServerInfoCodec.MaxModelIdBytes.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Message, StringComparison.Ordinal);

        // The longest id the DHT keys is announced and read back.
        var longest = new string('m', ServerInfoCodec.MaxModelIdBytes);
        await using var announcer = new ServerAnnouncer(discovery, swarm.Transport, longest, 4, new BlockRange(0, 2), options);
        Assert.True(await announcer.AnnounceJoiningAsync(PeerAddress.Parse("mem://longest"), Ct).WaitAsync(Bound, Ct));
        var blocks = await swarm.Discovery(2).GetServersAsync(longest, new BlockRange(1, 2), Ct).WaitAsync(Bound, Ct);
        Assert.Equal(ServerState.Joining, Assert.Single(Assert.Single(blocks).Servers).State);
        Assert.Equal(0, announcer.GetStatistics().Failures);
    }

    [Theory]
    [InlineData("AnnounceInterval")]
    [InlineData("TimeToLive")]
    [InlineData("MaxNextServers")]
    [InlineData("PublicName")]
    [InlineData("AnnounceHost")]
    public void Bad_options_are_refused_naming_the_option(string property)
    {
        var options = new ServerAnnouncerOptions();
        switch (property)
        {
            case "AnnounceInterval": options.AnnounceInterval = TimeSpan.Zero; break;
            case "TimeToLive": options.TimeToLive = TimeSpan.FromSeconds(30); break; // shorter than the interval
            case "MaxNextServers": options.MaxNextServers = -1; break;
            case "PublicName": options.PublicName = new string('x', 65); break;
            default: options.AnnounceHost = "has space"; break;
        }

        var error = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Equal(property, error.ParamName);
        Assert.Equal(TimeSpan.FromMinutes(3), new ServerAnnouncerOptions().EffectiveTimeToLive);

        // The DHT's 6-hour limit leaves no room for the 1 ms that the next announcement's expiration may be raised by.
        var atLimit = new ServerAnnouncerOptions { AnnounceInterval = TimeSpan.FromHours(1), TimeToLive = TimeSpan.FromHours(6) };
        Assert.Equal("TimeToLive", Assert.ThrowsAny<ArgumentException>(atLimit.Validate).ParamName);
        new ServerAnnouncerOptions { AnnounceInterval = TimeSpan.FromHours(1), TimeToLive = TimeSpan.FromMinutes(359) }.Validate();
        Assert.False(string.IsNullOrEmpty(ServerAnnouncerOptions.DefaultVersion));
    }

    [Theory]
    [InlineData("WarmupSteps")]
    [InlineData("Steps")]
    public void Bad_throughput_meter_options_are_refused_naming_the_option(string property)
    {
        var options = property == "Steps" ? new ThroughputMeterOptions { Steps = 0 } : new ThroughputMeterOptions { WarmupSteps = -1 };
        Assert.Equal(property, Assert.ThrowsAny<ArgumentException>(() => new ThroughputMeter(options)).ParamName);
    }

    [Fact]
    public async Task A_joining_server_relocates_and_an_online_one_moves_the_new_span_is_announced_and_the_left_blocks_go_offline()
    {
        await using var swarm = await AnnounceSwarm.CreateAsync(6);
        await using var first = await swarm.StartServerAsync(new BlockRange(1, 3), peer: 1, listen: true);
        await using var announcer = new ServerAnnouncer(
            first.Discovery, swarm.Transport, ServerHarness.ModelId, 4, new BlockRange(0, 2), new ServerAnnouncerOptions { TimeProvider = swarm.Time, AnnounceInterval = Interval, MaxNextServers = 0 });
        var reader = swarm.Discovery(5);

        // Joining on 0:2 first (as chosen), then on 1:3 (another server took 0:2 at the same time).
        Assert.True(await announcer.AnnounceJoiningAsync(PeerAddress.Parse("mem://loading"), Ct).WaitAsync(Bound, Ct));
        Assert.True(await announcer.RelocateAsync(new BlockRange(1, 3), Ct).WaitAsync(Bound, Ct));
        Assert.Equal(new BlockRange(1, 3), announcer.Span);
        var left = await ReadAsync(reader, first.PeerId, 0);
        Assert.Equal((ServerState.Offline, new BlockRange(0, 1)), (left.State, left.Span));
        foreach (var block in new[] { 1, 2 })
        {
            var joining = await ReadAsync(reader, first.PeerId, block);
            Assert.Equal((ServerState.Joining, new BlockRange(1, 3), PeerAddress.Parse("mem://loading")), (joining.State, joining.Span, joining.Address));
        }

        // Online on 1:3, then moved to 2:4 on a new listener: 2:4 online there, block 1 offline, block 0 untouched.
        Assert.True(await announcer.AnnounceOnlineAsync(first.Server, Ct).WaitAsync(Bound, Ct));
        await Assert.ThrowsAsync<InvalidOperationException>(() => announcer.RelocateAsync(new BlockRange(0, 2), Ct));
        await using var second = await swarm.StartServerAsync(new BlockRange(2, 4), peer: 1);
        await second.Server.StartAsync(await swarm.Transport.ListenAsync(PeerAddress.Parse("mem://moved-to-2-4"), Ct), Ct);
        Assert.True(await announcer.AnnounceMovedAsync(second.Server, Ct).WaitAsync(Bound, Ct));
        Assert.Equal(new BlockRange(2, 4), announcer.Span);
        Assert.Equal(ServerState.Offline, (await ReadAsync(reader, first.PeerId, 1)).State);
        foreach (var block in new[] { 2, 3 })
        {
            var online = await ReadAsync(reader, first.PeerId, block);
            Assert.Equal((ServerState.Online, new BlockRange(2, 4), second.Server.LocalAddress), (online.State, online.Span, online.Address));
        }

        // Republications announce the moved server; offline still covers only what it serves now.
        swarm.Time.Advance(Interval);
        await WaitForAsync(() => announcer.GetStatistics().Announcements >= 7);
        Assert.Equal(second.Server.LocalAddress, (await ReadAsync(reader, first.PeerId, 3)).Address);
        Assert.True(await announcer.AnnounceOfflineAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Equal(ServerState.Offline, (await ReadAsync(reader, first.PeerId, 2)).State);
    }

    [Fact]
    public async Task Relocating_or_moving_to_a_span_past_the_model_or_to_a_server_of_another_model_is_refused()
    {
        await using var swarm = await AnnounceSwarm.CreateAsync(2);
        await using var server = await swarm.StartServerAsync(new BlockRange(0, 2), peer: 1, listen: true);
        await using var announcer = swarm.Announcer(server, new ServerAnnouncerOptions { AnnounceInterval = Interval });
        Assert.True(await announcer.AnnounceJoiningAsync(server.Server.LocalAddress, Ct).WaitAsync(Bound, Ct));
        var past = await Assert.ThrowsAsync<ArgumentException>(() => announcer.RelocateAsync(new BlockRange(3, 5), Ct));
        Assert.Equal("The span 3:5 is empty or goes past the model's 4 blocks. (Parameter 'span')", past.Message);
        using var executor = RandomModelFixture.Factory.Create(new RandomModelFixture(TensorDType.F32, tied: false).Weights, new BlockRange(0, 2));
        await using var stranger = new BlockServer(executor, new BlockServerOptions { Blocks = new BlockRange(0, 2), ModelId = "other-model", PeerId = server.PeerId });
        await stranger.StartAsync(await swarm.Transport.ListenAsync(PeerAddress.Parse("mem://stranger-model"), Ct), Ct);
        var other = await Assert.ThrowsAsync<ArgumentException>(() => announcer.AnnounceMovedAsync(stranger, Ct));
        Assert.StartsWith("The server serves 'other-model', not the announced model", other.Message, StringComparison.Ordinal);
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not hold in time");
            await Task.Delay(10, Ct);
        }
    }

    private static async Task<ServerInfo> ReadAsync(IPeerDiscovery reader, string peerId, int block)
    {
        var blocks = await reader.GetServersAsync(Model, new BlockRange(block, block + 1), Ct).WaitAsync(Bound, Ct);
        return Assert.Single(Assert.Single(blocks).Servers, s => s.PeerId == peerId);
    }
}

/// <summary>A block server of a random 4-block model whose wire peer id is its DHT node's id.</summary>
internal sealed class AnnouncedServer(RandomModelFixture model, BlockServer server, string peerId, DhtPeerDiscovery discovery) : IAsyncDisposable
{
    public BlockServer Server { get; } = server;

    public Petals.Execution.IBlockExecutor Executor => Server.Executor;

    public BlockRange Span => Server.Blocks;

    public string PeerId { get; } = peerId;

    public DhtPeerDiscovery Discovery { get; } = discovery;

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync().AsTask().WaitAsync(ServerHarness.Bound);
        Server.Executor.Dispose();
        model.Dispose();
    }
}

/// <summary>DHT nodes on one memory transport and one manual clock, each bootstrapped from the first.</summary>
internal sealed class AnnounceSwarm : IAsyncDisposable
{
    private static int s_next;
    private readonly string _prefix = "announce-" + Interlocked.Increment(ref s_next).ToString(System.Globalization.CultureInfo.InvariantCulture);

    public MemoryTransport Transport { get; } = new();

    public ManualTimeProvider Time { get; } = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public List<DhtNode> Nodes { get; } = [];

    public static async Task<AnnounceSwarm> CreateAsync(int count)
    {
        var swarm = new AnnounceSwarm();
        for (var i = 0; i < count; i++)
        {
            var node = new DhtNode(PeerIdentity.Generate(), DhtNodeOptions.Default, swarm.Time);
            swarm.Nodes.Add(node);
            await node.StartAsync(swarm.Transport, PeerAddress.Parse($"mem://{swarm._prefix}-dht-{i}"), TestContext.Current.CancellationToken)
                .WaitAsync(ServerHarness.Bound, TestContext.Current.CancellationToken);
            if (i > 0)
            {
                var answered = await node.BootstrapAsync([swarm.Nodes[0].LocalAddress], TestContext.Current.CancellationToken)
                    .WaitAsync(ServerHarness.Bound, TestContext.Current.CancellationToken);
                Assert.Equal(1, answered);
            }
        }

        return swarm;
    }

    public DhtPeerDiscovery Discovery(int node) => new(Nodes[node], Time);

    /// <summary>A server for <paramref name="span"/> announcing through node <paramref name="peer"/>; listening on the memory transport when <paramref name="listen"/>.</summary>
    public async Task<AnnouncedServer> StartServerAsync(BlockRange span, int peer, bool listen = false)
    {
        var model = new RandomModelFixture(TensorDType.F32, tied: false);
        var discovery = Discovery(peer);
        var executor = RandomModelFixture.Factory.Create(model.Weights, span);
        var server = new BlockServer(executor, new BlockServerOptions
        {
            Blocks = span, ModelId = ServerHarness.ModelId, PeerId = discovery.LocalPeerId, CacheTokens = 1024, MaxSessionLength = 128, TimeProvider = Time,
        });
        if (listen)
        {
            await server.StartAsync(await Transport.ListenAsync(PeerAddress.Parse($"mem://{_prefix}-server-{peer}"), TestContext.Current.CancellationToken), TestContext.Current.CancellationToken);
        }

        return new AnnouncedServer(model, server, discovery.LocalPeerId, discovery);
    }

    public ServerAnnouncer Announcer(AnnouncedServer server, ServerAnnouncerOptions options)
    {
        options.TimeProvider = Time;
        return new ServerAnnouncer(server.Discovery, Transport, ServerHarness.ModelId, 4, server.Span, options);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            await node.DisposeAsync().AsTask().WaitAsync(ServerHarness.Bound);
        }
    }
}
