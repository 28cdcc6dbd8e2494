using FsCheck;
using FsCheck.Fluent;
using Petals.Client;
using Petals.Client.Routing;
using Petals.Discovery;
using Petals.Models;
using Petals.Routing;
using static Petals.Tests.Client.Routing.RoutingSwarm;

namespace Petals.Tests.Client.Routing;

/// <summary>The minimum-latency inference route against a brute-force search, and the router's filters and errors.</summary>
public sealed class MinLatencyRouterTests
{
    private static readonly RouterOptions Defaults = new();

    [Fact]
    public void The_inference_route_is_valid_and_costs_exactly_the_minimum_over_every_segmentation()
    {
        Prop.ForAll(Arb.From(Gen.Choose(0, int.MaxValue)), seed =>
        {
            var random = new Random(seed);
            var (request, usable, options) = RandomCase(random, coarse: false);
            var router = new MinLatencyRouter(options);
            var hop = options.HopOverhead.TotalSeconds;
            var penalty = options.CacheMissPenalty.TotalSeconds;
            var unknown = options.UnknownRtt.TotalSeconds;
            var best = BruteForce(request, usable, options);
            if (best is null)
            {
                var error = Assert.Throws<RemoteChainException>(() => router.RouteInference(request));
                var gaps = string.Join(", ", Gaps(usable, request.Blocks));
                return error.Message.StartsWith($"no online server covers blocks {gaps} of model m (", StringComparison.Ordinal);
            }

            var route = router.RouteInference(request);
            var problem = Problem(route, request, usable);
            if (problem is not null)
            {
                throw new InvalidOperationException($"seed {seed}: {problem}");
            }

            var cost = Cost(route, request, hop, penalty, unknown, options.DefaultThroughput);
            return Math.Abs(cost - best.Value) <= 1e-9 * Math.Max(1, best.Value);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(500));
    }

    [Fact]
    public void The_route_does_not_depend_on_the_order_servers_are_listed_in()
    {
        Prop.ForAll(Arb.From(Gen.Choose(0, int.MaxValue)), seed =>
        {
            var random = new Random(seed);
            var (request, usable, options) = RandomCase(random, coarse: true);
            if (BruteForce(request, usable, options) is null)
            {
                return true;
            }

            var router = new MinLatencyRouter(options);
            var shuffled = request with { Servers = [.. request.Servers.OrderBy(_ => random.Next())] };
            var a = router.RouteInference(request);
            var b = router.RouteInference(shuffled);
            return a.Select(s => (s.Server.PeerId, s.Blocks)).SequenceEqual(b.Select(s => (s.Server.PeerId, s.Blocks)));
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Switching_in_the_middle_of_a_span_is_chosen_when_it_is_cheaper()
    {
        // A runs 0:4 at 1 token/s per block, B runs 2:4 at 100.
        // Staying on A: 4 s of compute. Switching at 2: 2 s + 0.01 s + one hop, which is cheaper.
        var a = Peer("a", 0, 4, throughput: 1, next: new Dictionary<string, TimeSpan> { ["b"] = TimeSpan.FromMilliseconds(5) });
        var b = Peer("b", 2, 4, throughput: 100);
        var route = new MinLatencyRouter(Defaults).RouteInference(new RouteRequest { Servers = [a, b], Blocks = new BlockRange(0, 4) });
        Assert.Equal([("a", new BlockRange(0, 2)), ("b", new BlockRange(2, 4))], route.Select(s => (s.Server.PeerId, s.Blocks)));
    }

    [Fact]
    public void A_required_adapter_leaves_out_servers_that_do_not_hold_it_for_inference_and_forward_routes()
    {
        var fast = Peer("fast", 0, 4, throughput: 1000);
        var slowA = Peer("slow-a", 0, 2) with { Adapters = ["rhymes"] };
        var slowB = Peer("slow-b", 2, 4) with { Adapters = ["rhymes", "pirate"] };
        var request = new RouteRequest { Servers = [fast, slowA, slowB], Blocks = new BlockRange(0, 4), RequiredAdapter = "rhymes" };
        var router = new MinLatencyRouter(Defaults);
        Assert.Equal(["slow-a", "slow-b"], router.RouteInference(request).Select(s => s.Server.PeerId));
        Assert.Equal(["slow-a", "slow-b"], router.RouteForward(request).Select(s => s.Server.PeerId));
        Assert.Equal(["fast"], router.RouteInference(request with { RequiredAdapter = null }).Select(s => s.Server.PeerId));

        var error = Assert.Throws<RemoteChainException>(() => router.RouteInference(request with { RequiredAdapter = "pirate" }));
        Assert.StartsWith($"no online server holding adapter 'pirate' covers blocks {new BlockRange(0, 2)}", error.Message, StringComparison.Ordinal);
        Assert.Contains("(no adapter 'pirate')", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_server_is_never_entered_and_left_at_the_same_block_as_a_relay()
    {
        // From a to c the announced hop is unknown (1 s), but a -> b and b -> c are free and entering b costs nothing:
        // relaying through b without running a block there would look cheaper, and is not a route.
        var options = new RouterOptions { HopOverhead = TimeSpan.Zero, UnknownRtt = TimeSpan.FromSeconds(1) };
        var a = Peer("a", 0, 2, throughput: 10, next: new Dictionary<string, TimeSpan> { ["b"] = TimeSpan.Zero });
        var b = Peer("b", 0, 4, throughput: 0.001, next: new Dictionary<string, TimeSpan> { ["c"] = TimeSpan.Zero });
        var c = Peer("c", 2, 4, throughput: 10);
        var rtts = new Dictionary<string, TimeSpan> { ["a"] = TimeSpan.Zero, ["b"] = TimeSpan.Zero, ["c"] = TimeSpan.Zero };
        var route = new MinLatencyRouter(options).RouteInference(new RouteRequest { Servers = [a, b, c], Blocks = new BlockRange(0, 4), ClientRtts = rtts });
        Assert.Equal([("a", new BlockRange(0, 2)), ("c", new BlockRange(2, 4))], route.Select(s => (s.Server.PeerId, s.Blocks)));
    }

    [Fact]
    public void Equal_costs_go_to_fewer_segments_then_to_the_smaller_peer_id()
    {
        // Same throughput everywhere and no hop cost: one server for 0:4 beats two with the same compute time.
        var options = new RouterOptions { HopOverhead = TimeSpan.Zero, UnknownRtt = TimeSpan.Zero };
        var servers = new[] { Peer("c", 0, 2, throughput: 4), Peer("d", 2, 4, throughput: 4), Peer("z", 0, 4, throughput: 4), Peer("y", 0, 4, throughput: 4) };
        var route = new MinLatencyRouter(options).RouteInference(new RouteRequest { Servers = servers, Blocks = new BlockRange(0, 4) });
        Assert.Equal([("y", new BlockRange(0, 4))], route.Select(s => (s.Server.PeerId, s.Blocks)));
    }

    [Fact]
    public void A_server_whose_cache_cannot_hold_the_session_is_avoided_unless_nothing_else_has_its_blocks()
    {
        var full = Peer("full", 0, 4, throughput: 1000, cacheLeft: 100);
        var slow = Peer("slow", 0, 4, throughput: 1, cacheLeft: 10_000);
        var router = new MinLatencyRouter(Defaults);
        var route = router.RouteInference(new RouteRequest { Servers = [full, slow], Blocks = new BlockRange(0, 4), CacheTokensNeeded = 2048 });
        Assert.Equal("slow", Assert.Single(route).Server.PeerId);

        // Enough cache: the fast server wins again.
        route = router.RouteInference(new RouteRequest { Servers = [full, slow], Blocks = new BlockRange(0, 4), CacheTokensNeeded = 100 });
        Assert.Equal("full", Assert.Single(route).Server.PeerId);

        // Only the full server has blocks 2:4: it is used rather than refused. The penalty is paid on entering it
        // (the session needs the same cache however many of its blocks run there), so it then runs every block.
        var half = Peer("half", 0, 2, throughput: 1, cacheLeft: 10_000);
        route = router.RouteInference(new RouteRequest { Servers = [full, half], Blocks = new BlockRange(0, 4), CacheTokensNeeded = 2048 });
        Assert.Equal([("full", new BlockRange(0, 4))], route.Select(s => (s.Server.PeerId, s.Blocks)));

        // Two full servers, one of them needed: the route enters only one penalized server.
        var fullTail = Peer("fullTail", 2, 4, throughput: 1000, cacheLeft: 100);
        route = router.RouteInference(new RouteRequest { Servers = [half, fullTail, Peer("fullHead", 0, 2, throughput: 1000, cacheLeft: 0)], Blocks = new BlockRange(0, 4), CacheTokensNeeded = 2048 });
        Assert.Equal([("half", new BlockRange(0, 2)), ("fullTail", new BlockRange(2, 4))], route.Select(s => (s.Server.PeerId, s.Blocks)));
    }

    [Fact]
    public void A_banned_server_is_used_only_for_the_blocks_no_other_server_has()
    {
        var fast = Peer("fast", 0, 4, throughput: 1000);
        var left = Peer("left", 0, 2, throughput: 1);
        var right = Peer("right", 3, 4, throughput: 1);
        var banned = new HashSet<string> { "fast" };
        var router = new MinLatencyRouter(Defaults, new Random(1));
        var request = new RouteRequest { Servers = [fast, left, right], Blocks = new BlockRange(0, 4), BannedPeers = banned };
        IReadOnlyList<(string, BlockRange)> expected = [("left", new BlockRange(0, 2)), ("fast", new BlockRange(2, 3)), ("right", new BlockRange(3, 4))];
        Assert.Equal(expected, router.RouteInference(request).Select(s => (s.Server.PeerId, s.Blocks)));
        Assert.Equal(expected, router.RouteForward(request).Select(s => (s.Server.PeerId, s.Blocks)));

        // Not banned: the fast server runs everything.
        var free = router.RouteInference(request with { BannedPeers = new HashSet<string>() });
        Assert.Equal(("fast", new BlockRange(0, 4)), (Assert.Single(free).Server.PeerId, free[0].Blocks));

        // Banned but alone: still used, since otherwise there is no route at all.
        var alone = router.RouteInference(request with { Servers = [fast] });
        Assert.Equal(("fast", new BlockRange(0, 4)), (Assert.Single(alone).Server.PeerId, alone[0].Blocks));
    }

    [Fact]
    public void Blocked_peers_are_never_used_and_an_allow_list_keeps_only_its_peers()
    {
        var a = Peer("aaaaaaaaaaaa", 0, 4, throughput: 1000);
        var b = Peer("b", 0, 4, throughput: 1);
        var c = Peer("c", 0, 4, throughput: 5);
        var request = new RouteRequest { Servers = [a, b, c], Blocks = new BlockRange(0, 4), ModelId = "m" };

        var blocking = new RouterOptions();
        blocking.BlockedPeers.Add("aaaaaaaaaaaa");
        Assert.Equal("c", Assert.Single(new MinLatencyRouter(blocking).RouteInference(request)).Server.PeerId);

        var allowing = new RouterOptions();
        allowing.AllowedPeers.Add("b");
        var router = new MinLatencyRouter(allowing);
        Assert.Equal("b", Assert.Single(router.RouteInference(request)).Server.PeerId);
        Assert.Equal("b", Assert.Single(router.RouteForward(request)).Server.PeerId);

        // A blocked peer that is the only one with the blocks still is not used, and the error says why.
        var onlyBlocked = request with { Servers = [a] };
        var error = Assert.Throws<RemoteChainException>(() => new MinLatencyRouter(blocking).RouteInference(onlyBlocked));
        Assert.Equal("no online server covers blocks 0:4 of model m (routing blocks 0:4; online spans: none; left out by the peer lists: aaaaaaaa… (blocked))", error.Message);
    }

    [Fact]
    public void A_sub_range_is_routed_from_its_first_block_to_its_last_using_parts_of_larger_spans()
    {
        var a = Peer("a", 0, 4, throughput: 50);
        var b = Peer("b", 3, 8, throughput: 50);
        var elsewhere = Peer("elsewhere", 6, 8, throughput: 1000);
        var request = new RouteRequest { Servers = [a, b, elsewhere], Blocks = new BlockRange(2, 5), BannedPeers = new HashSet<string>() };
        var route = new MinLatencyRouter(Defaults).RouteInference(request);
        Assert.Null(Problem(route, request, [a, b, elsewhere]));
        Assert.Equal(2, route[0].Blocks.Start);
        Assert.Equal(5, route[^1].Blocks.End);
        Assert.DoesNotContain(route, s => s.Server.PeerId == "elsewhere");

        // One block alone is a valid range.
        var single = new MinLatencyRouter(Defaults).RouteInference(request with { Blocks = new BlockRange(7, 8) });
        Assert.Equal(("elsewhere", new BlockRange(7, 8)), (Assert.Single(single).Server.PeerId, single[0].Blocks));
    }

    [Fact]
    public void No_route_names_exactly_the_uncovered_blocks_of_the_range()
    {
        var servers = new[]
        {
            Peer("a", 0, 1),
            Peer("b", 2, 4),
            Peer("joining", 1, 2, state: ServerState.Joining),
            Peer("offline", 4, 6, state: ServerState.Offline),
        };
        var router = new MinLatencyRouter(Defaults);
        var request = new RouteRequest { Servers = servers, Blocks = new BlockRange(0, 6), ModelId = "llama" };
        var error = Assert.Throws<RemoteChainException>(() => router.RouteInference(request));
        Assert.Equal("no online server covers blocks 1:2, 4:6 of model llama (routing blocks 0:6; online spans: 0:1 by a, 2:4 by b)", error.Message);
        error = Assert.Throws<RemoteChainException>(() => router.RouteForward(request with { Blocks = new BlockRange(3, 5) }));
        Assert.StartsWith("no online server covers blocks 4:5 of model llama (", error.Message, StringComparison.Ordinal);
        error = Assert.Throws<RemoteChainException>(() => router.RouteInference(request with { Servers = [], ModelId = string.Empty }));
        Assert.Equal("no online server covers blocks 0:6 (routing blocks 0:6; online spans: none)", error.Message);
    }

    [Fact]
    public void Malformed_requests_are_refused_with_the_field_at_fault()
    {
        var router = new MinLatencyRouter(Defaults);
        var duplicate = Assert.Throws<ArgumentException>(() => router.RouteInference(new RouteRequest { Servers = [Peer("a", 0, 2), Peer("a", 2, 4)], Blocks = new BlockRange(0, 4) }));
        Assert.Contains("request.Servers lists peer a more than once", duplicate.Message, StringComparison.Ordinal);
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => router.RouteInference(new RouteRequest { Servers = [Peer("a", 0, 4)], Blocks = new BlockRange(0, 4), CacheTokensNeeded = -1 }));
        Assert.Equal("request.CacheTokensNeeded", negative.ParamName);
        Assert.Throws<ArgumentNullException>(() => router.RouteForward(null!));
        var badOptions = new RouterOptions { HopOverhead = TimeSpan.FromSeconds(-1) };
        Assert.Equal("HopOverhead", Assert.Throws<ArgumentOutOfRangeException>(() => new MinLatencyRouter(badOptions)).ParamName);
    }

    [Fact]
    public void A_large_swarm_is_routed_validly()
    {
        // 150 servers over 80 blocks: the size of a busy public swarm. The route must be valid and cost no more than
        // the best single-server-per-span greedy chain would.
        var random = new Random(2026);
        var servers = Enumerable.Range(0, 150).Select(i =>
        {
            var start = random.Next(0, 80);
            return Peer($"peer{i:D3}", start, Math.Min(80, start + random.Next(1, 30)), throughput: random.Next(1, 200));
        }).ToList();
        servers.Add(Peer("zfull", 0, 80, throughput: 1));
        var rtts = servers.ToDictionary(s => s.PeerId, _ => TimeSpan.FromMilliseconds(random.Next(1, 100)));
        var request = new RouteRequest { Servers = servers, Blocks = new BlockRange(0, 80), ClientRtts = rtts };
        var route = new MinLatencyRouter(Defaults).RouteInference(request);
        Assert.Null(Problem(route, request, [.. servers]));
        var single = new[] { new RouteSegment(servers[^1], new BlockRange(0, 80)) };
        Assert.True(Cost(route, request, 0.01, 3600, 0.1, 10) <= Cost(single, request, 0.01, 3600, 0.1, 10));
    }

    /// <summary>A random swarm, request and options; <paramref name="coarse"/> draws from few values so that ties are common.</summary>
    private static (RouteRequest Request, ServerInfo[] Usable, RouterOptions Options) RandomCase(Random random, bool coarse)
    {
        var blocks = random.Next(1, 7);
        var start = random.Next(0, blocks);
        var range = new BlockRange(start, random.Next(start + 1, blocks + 1));
        var ids = Enumerable.Range(0, random.Next(0, 7)).Select(i => $"peer{i}").ToArray();
        TimeSpan Ms() => TimeSpan.FromMilliseconds(coarse ? random.Next(0, 3) * 10 : random.Next(0, 200));
        var servers = new List<ServerInfo>();
        foreach (var id in ids)
        {
            var s = random.Next(0, blocks);
            var next = ids.Where(_ => random.Next(3) > 0).ToDictionary(other => other, _ => Ms());
            servers.Add(Peer(
                id,
                s,
                random.Next(s + 1, blocks + 1),
                throughput: coarse ? random.Next(0, 3) * 10 : random.Next(0, 4) == 0 ? 0 : (random.NextDouble() * 50) + 0.5,
                cacheLeft: random.Next(0, 3) * 1000,
                state: random.Next(8) == 0 ? ServerState.Joining : ServerState.Online,
                next: next));
        }

        var options = new RouterOptions
        {
            HopOverhead = Ms(),
            UnknownRtt = Ms(),
            CacheMissPenalty = TimeSpan.FromSeconds(coarse ? 10 : random.Next(1, 100)),
            DefaultThroughput = coarse ? 10 : random.Next(1, 30),
        };
        foreach (var id in ids.Where(_ => random.Next(6) == 0))
        {
            options.BlockedPeers.Add(id);
        }

        var request = new RouteRequest
        {
            Servers = servers,
            Blocks = range,
            ModelId = "m",
            ClientRtts = ids.Where(_ => random.Next(3) > 0).ToDictionary(id => id, _ => Ms()),
            CacheTokensNeeded = random.Next(0, 3) * 1000,
            BannedPeers = ids.Where(_ => random.Next(4) == 0).ToHashSet(),
        };
        var usable = servers.Where(s => s.State == ServerState.Online && !options.BlockedPeers.Contains(s.PeerId)).ToArray();
        return (request, usable, options);
    }

    /// <summary>The least cost over every segmentation of the range into runs on servers that may run them; null when none exists.</summary>
    private static double? BruteForce(RouteRequest request, ServerInfo[] usable, RouterOptions options)
    {
        double? best = null;
        var route = new List<RouteSegment>();
        Extend(request.Blocks.Start);
        return best;

        void Extend(int at)
        {
            if (at == request.Blocks.End)
            {
                var cost = Cost(route, request, options.HopOverhead.TotalSeconds, options.CacheMissPenalty.TotalSeconds, options.UnknownRtt.TotalSeconds, options.DefaultThroughput);
                best = best is null ? cost : Math.Min(best.Value, cost);
                return;
            }

            foreach (var server in usable)
            {
                if (route.Count > 0 && route[^1].Server == server)
                {
                    continue; // two runs in a row on one server are one run
                }

                for (var end = at + 1; end <= request.Blocks.End && MayRun(server, end - 1, usable, request.BannedPeers); end++)
                {
                    route.Add(new RouteSegment(server, new BlockRange(at, end)));
                    Extend(end);
                    route.RemoveAt(route.Count - 1);
                }
            }
        }
    }
}
