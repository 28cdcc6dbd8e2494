using Petals.Client;
using Petals.Discovery;
using Petals.Models;
using Petals.Routing;
using Petals.Testing.Time;

namespace Petals.Tests.Client;

/// <summary>The sequence manager over DhtPeerDiscovery: 7 real DHT nodes on the in-memory transport and one manual clock.</summary>
public sealed class SwarmSequenceManagerTests
{
    private const string Model = "test-model:llama-4x48";
    private static readonly TimeSpan Bound = DiscoverySwarm.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<(DiscoverySwarm Swarm, ManualTimeProvider Time)> StartAsync()
    {
        var time = new ManualTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        return (await DiscoverySwarm.StartAsync(7, time, Ct), time);
    }

    private static async Task<SwarmSequenceManager> ManagerAsync(DiscoverySwarm swarm, TimeProvider time, int blocks = 4, SwarmSequenceOptions? options = null)
    {
        var manager = new SwarmSequenceManager(swarm.Client, Model, blocks, options, time);
        await manager.StartAsync(Ct).WaitAsync(Bound, Ct);
        return manager;
    }

    private static string[] Ids(IEnumerable<ServerInfo> chain) => [.. chain.Select(s => s.PeerId)];

    private static string[] Ids(IEnumerable<RouteSegment> route) => [.. route.Select(s => s.Server.PeerId)];

    private static IReadOnlyList<RouteSegment> Route(SwarmSequenceManager manager, IReadOnlySet<string>? exclude = null) => manager.RouteInference(1, 0, exclude);

    [Fact]
    public async Task The_chain_prefers_faster_servers_even_over_more_hops()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(0, 4), throughput: 10), ct: Ct);
        await swarm.AnnounceAsync(Model, 4, swarm.Info(2, new BlockRange(0, 2), throughput: 1000), ct: Ct);
        await swarm.AnnounceAsync(Model, 4, swarm.Info(3, new BlockRange(2, 4), throughput: 1000), ct: Ct);
        await using var manager = await ManagerAsync(swarm, time);

        Assert.Equal(3, manager.OnlineServers.Count);
        var chain = Route(manager);
        Assert.Equal(Ids([swarm.Info(2, new(0, 2)), swarm.Info(3, new(2, 4))]), Ids(chain));
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 4)], chain.Select(s => s.Blocks));
        Assert.Equal("server 2", chain[0].Server.PublicName);
    }

    [Fact]
    public async Task At_equal_speed_the_chain_takes_fewer_hops()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(0, 2)), ct: Ct);
        await swarm.AnnounceAsync(Model, 4, swarm.Info(2, new BlockRange(2, 4)), ct: Ct);
        await swarm.AnnounceAsync(Model, 4, swarm.Info(3, new BlockRange(0, 4)), ct: Ct);
        await using var manager = await ManagerAsync(swarm, time);

        Assert.Equal([swarm.Peers[3].LocalPeerId], Ids(Route(manager)));

        // Without it, the two-server chain is the only one.
        var chain = Route(manager, new HashSet<string> { swarm.Peers[3].LocalPeerId });
        Assert.Equal([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId], Ids(chain));
    }

    [Fact]
    public async Task A_measured_rtt_to_the_next_server_beats_a_faster_server_with_an_unknown_rtt_and_exclusion_reroutes()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        var fast = swarm.Info(4, new BlockRange(2, 4), throughput: 1000);
        var near = swarm.Info(3, new BlockRange(2, 4), throughput: 200);
        var head = swarm.Info(2, new BlockRange(0, 2), throughput: 1000) with
        {
            NextServerRtts = new Dictionary<string, TimeSpan> { [near.PeerId] = TimeSpan.FromMilliseconds(1) },
        };
        await swarm.AnnounceAsync(Model, 4, head, ct: Ct);
        await swarm.AnnounceAsync(Model, 4, near, ct: Ct);
        await swarm.AnnounceAsync(Model, 4, fast, ct: Ct);
        await using var manager = await ManagerAsync(swarm, time);

        // Unmeasured client RTTs cost the same for all; head→near: its announced 1 ms + 1/200 s per block, head→fast: the
        // unknown 100 ms + 1/1000 s per block.
        Assert.Equal([head.PeerId, near.PeerId], Ids(Route(manager)));
        Assert.Equal([head.PeerId, fast.PeerId], Ids(Route(manager, new HashSet<string> { near.PeerId })));
        Assert.Equal(Ids(Route(manager)), Ids(Route(manager)));

        var error = Assert.Throws<RemoteChainException>(() => Route(manager, new HashSet<string> { near.PeerId, fast.PeerId }));
        Assert.StartsWith($"no online server covers blocks 2:4 of model {Model} (routing blocks 0:4; online spans: 0:2 by {head.PeerId[..8]}…); excluded: ", error.Message, StringComparison.Ordinal);
        Assert.Contains(fast.PeerId[..8] + "…", error.Message, StringComparison.Ordinal);
        Assert.Contains(near.PeerId[..8] + "…", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Joining_and_offline_servers_are_not_routed_through()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(0, 4), throughput: 10), ct: Ct);
        await swarm.AnnounceAsync(Model, 4, swarm.Info(2, new BlockRange(0, 4), ServerState.Joining, throughput: 1000), ct: Ct);
        await swarm.AnnounceAsync(Model, 4, swarm.Info(3, new BlockRange(0, 4), ServerState.Offline, throughput: 1000), ct: Ct);
        await using var manager = await ManagerAsync(swarm, time);

        Assert.Equal(3, manager.Announcements[0].Servers.Count);
        Assert.Equal([swarm.Peers[1].LocalPeerId], Ids(manager.OnlineServers));
        Assert.Equal([swarm.Peers[1].LocalPeerId], Ids(Route(manager)));

        // The only online server goes offline: after a refresh nothing is left.
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(0, 4), ServerState.Offline), ct: Ct);
        await manager.RefreshAsync(Ct).WaitAsync(Bound, Ct);
        var error = Assert.Throws<RemoteChainException>(() => Route(manager));
        Assert.Equal($"no online server covers blocks 0:4 of model {Model} (routing blocks 0:4; online spans: none)", error.Message);
    }

    [Fact]
    public async Task An_expired_server_drops_out_of_chains_on_the_clock_even_between_refreshes()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(0, 4), throughput: 10), TimeSpan.FromMinutes(10), Ct);
        await swarm.AnnounceAsync(Model, 4, swarm.Info(2, new BlockRange(0, 4), throughput: 1000), TimeSpan.FromMinutes(1), Ct);
        await using var manager = await ManagerAsync(swarm, time, options: new SwarmSequenceOptions { RefreshInterval = TimeSpan.FromHours(1) });
        Assert.Equal([swarm.Peers[2].LocalPeerId], Ids(Route(manager)));
        Assert.Equal(time.GetUtcNow() + TimeSpan.FromMinutes(1), manager.OnlineServers.Single(s => s.PeerId == swarm.Peers[2].LocalPeerId).ExpiresAt);

        time.Advance(TimeSpan.FromSeconds(61));
        Assert.Equal(1, manager.RefreshCount);
        Assert.Equal([swarm.Peers[1].LocalPeerId], Ids(Route(manager)));

        // A refresh reads no record of the expired server at all.
        await manager.RefreshAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Equal([swarm.Peers[1].LocalPeerId], Ids(manager.OnlineServers));
        Assert.All(manager.Announcements, b => Assert.DoesNotContain(b.Servers, s => s.PeerId == swarm.Peers[2].LocalPeerId));
    }

    [Fact]
    public async Task The_background_refresh_runs_every_refresh_interval_on_the_clock()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(0, 4), throughput: 10), TimeSpan.FromHours(1), Ct);
        await using var manager = await ManagerAsync(swarm, time, options: new SwarmSequenceOptions { RefreshInterval = TimeSpan.FromSeconds(30) });
        Assert.Equal(1, manager.RefreshCount);
        var first = manager.LastRefreshedAt;

        await swarm.AnnounceAsync(Model, 4, swarm.Info(2, new BlockRange(0, 4), throughput: 1000), TimeSpan.FromHours(1), Ct);
        time.Advance(TimeSpan.FromSeconds(29));
        Assert.Equal(1, manager.RefreshCount);
        Assert.Equal([swarm.Peers[1].LocalPeerId], Ids(Route(manager)));

        time.Advance(TimeSpan.FromSeconds(1));
        await WaitUntilAsync(() => manager.RefreshCount >= 2);
        Assert.Null(manager.LastRefreshError);
        Assert.True(manager.LastRefreshedAt > first);
        Assert.Equal([swarm.Peers[2].LocalPeerId], Ids(Route(manager)));

        time.Advance(TimeSpan.FromSeconds(30));
        await WaitUntilAsync(() => manager.RefreshCount >= 3);
    }

    [Fact]
    public async Task A_failed_background_refresh_keeps_the_previous_view_and_reports_the_error()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(0, 4)), TimeSpan.FromHours(1), Ct);
        await using var manager = await ManagerAsync(swarm, time);

        // The client's own DHT node stops: the next refresh cannot look anything up.
        await swarm.Nodes[0].DisposeAsync().AsTask().WaitAsync(Bound, Ct);
        time.Advance(manager.Options.RefreshInterval);
        await WaitUntilAsync(() => manager.LastRefreshError is not null);
        Assert.Equal(1, manager.RefreshCount);
        Assert.Equal([swarm.Peers[1].LocalPeerId], Ids(Route(manager)));
        await Assert.ThrowsAnyAsync<Exception>(() => manager.RefreshAsync(Ct).WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task A_gap_names_exactly_the_uncovered_blocks_and_the_online_spans()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        await swarm.AnnounceAsync(Model, 8, swarm.Info(1, new BlockRange(0, 3)), ct: Ct);
        await swarm.AnnounceAsync(Model, 8, swarm.Info(2, new BlockRange(5, 7)), ct: Ct);
        await swarm.AnnounceAsync(Model, 8, swarm.Info(3, new BlockRange(3, 4), ServerState.Joining), ct: Ct);
        await using var manager = await ManagerAsync(swarm, time, blocks: 8);

        var error = Assert.Throws<RemoteChainException>(() => Route(manager));
        var (a, b) = (swarm.Peers[1].LocalPeerId[..8], swarm.Peers[2].LocalPeerId[..8]);
        Assert.Equal($"no online server covers blocks 3:5, 7:8 of model {Model} (routing blocks 0:8; online spans: 0:3 by {a}…, 5:7 by {b}…)", error.Message);
    }

    [Fact]
    public async Task Overlapping_spans_are_routed_as_sub_ranges_that_tile_the_model()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(0, 3)), ct: Ct);
        await swarm.AnnounceAsync(Model, 4, swarm.Info(2, new BlockRange(2, 4)), ct: Ct);
        await using var manager = await ManagerAsync(swarm, time);

        var route = Route(manager);
        Assert.Equal([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId], Ids(route));
        Assert.Equal(0, route[0].Blocks.Start);
        Assert.Equal(route[0].Blocks.End, route[1].Blocks.Start);
        Assert.Equal(4, route[1].Blocks.End);
        Assert.All(route, s => Assert.True(s.Blocks.Start >= s.Server.Span.Start && s.Blocks.End <= s.Server.Span.End, $"{s.Blocks} outside {s.Server.Span}"));
    }

    [Fact]
    public async Task A_peers_latest_announcement_wins_over_leftovers_and_spans_past_the_model_are_ignored_with_a_reason()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;

        // Peer 1 first announced 0:4, then (say after a restart) 2:4: blocks 0 and 1 still hold the old 0:4 records, which
        // are leftovers of the earlier announcement and must neither hide the server nor put it on blocks 0:2.
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(0, 4), throughput: 1000), ct: Ct);
        time.Advance(TimeSpan.FromSeconds(1));
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(2, 4), throughput: 1000), ct: Ct);

        // Peer 2 serves 6 blocks of what it thinks is a 6-block model.
        await swarm.AnnounceAsync(Model, 6, swarm.Info(2, new BlockRange(0, 6), throughput: 1000), ct: Ct);
        await swarm.AnnounceAsync(Model, 4, swarm.Info(3, new BlockRange(0, 2), throughput: 1), ct: Ct);
        await using var manager = await ManagerAsync(swarm, time);

        Assert.Equal([swarm.Peers[3].LocalPeerId, swarm.Peers[1].LocalPeerId], Ids(manager.OnlineServers));
        Assert.Equal(new BlockRange(2, 4), manager.OnlineServers.Single(s => s.PeerId == swarm.Peers[1].LocalPeerId).Span);
        Assert.Equal([swarm.Peers[3].LocalPeerId, swarm.Peers[1].LocalPeerId], Ids(Route(manager)));
        Assert.Contains(manager.IgnoredServers, m => m.Contains(swarm.Peers[2].LocalPeerId[..8], StringComparison.Ordinal) && m.Contains("span 0:6 goes past the model's 4 blocks", StringComparison.Ordinal));
        Assert.Single(manager.IgnoredServers);

        // Once the latest announcement says offline, the leftovers do not bring the server back.
        await swarm.AnnounceAsync(Model, 4, swarm.Info(1, new BlockRange(2, 4), ServerState.Offline), ct: Ct);
        await manager.RefreshAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Equal([swarm.Peers[3].LocalPeerId], Ids(manager.OnlineServers));
    }

    [Fact]
    public async Task Bad_arguments_and_a_second_start_are_refused()
    {
        var (swarm, time) = await StartAsync();
        await using var _ = swarm;
        Assert.Throws<ArgumentOutOfRangeException>(() => new SwarmSequenceManager(swarm.Client, Model, 0));
        Assert.Throws<ArgumentException>(() => new SwarmSequenceManager(swarm.Client, string.Empty, 4));
        var refresh = Assert.Throws<ArgumentOutOfRangeException>(() => new SwarmSequenceManager(swarm.Client, Model, 4, new SwarmSequenceOptions { RefreshInterval = TimeSpan.Zero }));
        Assert.Equal("RefreshInterval", refresh.ParamName);
        await using var manager = await ManagerAsync(swarm, time);
        await Assert.ThrowsAsync<InvalidOperationException>(() => manager.StartAsync(Ct));
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not become true in time");
            await Task.Delay(10, Ct);
        }
    }
}
