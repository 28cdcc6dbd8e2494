using FsCheck;
using FsCheck.Fluent;
using Petals.Client;
using Petals.Client.Routing;
using Petals.Discovery;
using Petals.Models;
using Petals.Routing;
using static Petals.Tests.Client.Routing.RoutingSwarm;

namespace Petals.Tests.Client.Routing;

/// <summary>Forward and backward routes: throughput-weighted choices that always give a valid route.</summary>
public sealed class ForwardRoutingTests
{
    [Fact]
    public void Servers_are_chosen_in_proportion_to_their_throughput()
    {
        var servers = new[] { Peer("a", 0, 4, throughput: 1), Peer("b", 0, 4, throughput: 2), Peer("c", 0, 4, throughput: 7) };
        var router = new MinLatencyRouter(new RouterOptions(), new Random(1234));
        var request = new RouteRequest { Servers = servers, Blocks = new BlockRange(0, 4) };
        const int Draws = 20_000;
        var counts = new Dictionary<string, int>(StringComparer.Ordinal) { ["a"] = 0, ["b"] = 0, ["c"] = 0 };
        for (var i = 0; i < Draws; i++)
        {
            var route = router.RouteForward(request);
            var segment = Assert.Single(route);
            Assert.Equal(new BlockRange(0, 4), segment.Blocks);
            counts[segment.Server.PeerId]++;
        }

        // Expected 0.1, 0.2, 0.7; with 20,000 draws the standard deviation is at most 0.0033, so 0.02 is six of them.
        Assert.InRange(counts["a"] / (double)Draws, 0.08, 0.12);
        Assert.InRange(counts["b"] / (double)Draws, 0.18, 0.22);
        Assert.InRange(counts["c"] / (double)Draws, 0.68, 0.72);
    }

    [Fact]
    public void An_unmeasured_server_weighs_the_default_throughput()
    {
        var servers = new[] { Peer("measured", 0, 2, throughput: 30), Peer("unmeasured", 0, 2, throughput: 0) };
        var options = new RouterOptions { DefaultThroughput = 10 };
        var router = new MinLatencyRouter(options, new Random(99));
        var request = new RouteRequest { Servers = servers, Blocks = new BlockRange(0, 2) };
        var unmeasured = Enumerable.Range(0, 10_000).Count(_ => router.RouteForward(request)[0].Server.PeerId == "unmeasured");
        Assert.InRange(unmeasured / 10_000.0, 0.22, 0.28);
    }

    [Fact]
    public void The_same_seed_gives_the_same_routes()
    {
        var servers = new[] { Peer("a", 0, 3, throughput: 5), Peer("b", 1, 6, throughput: 5), Peer("c", 2, 6, throughput: 5), Peer("d", 0, 6, throughput: 1) };
        var request = new RouteRequest { Servers = servers, Blocks = new BlockRange(0, 6) };
        var first = new MinLatencyRouter(new RouterOptions(), new Random(7));
        var second = new MinLatencyRouter(new RouterOptions(), new Random(7));
        for (var i = 0; i < 50; i++)
        {
            Assert.Equal(first.RouteForward(request), second.RouteForward(request));
        }
    }

    [Fact]
    public void Every_forward_route_is_valid_and_runs_each_chosen_server_as_far_as_it_can()
    {
        Prop.ForAll(Arb.From(Gen.Choose(0, int.MaxValue)), seed =>
        {
            var random = new Random(seed);
            var blocks = random.Next(1, 9);
            var start = random.Next(0, blocks);
            var range = new BlockRange(start, random.Next(start + 1, blocks + 1));
            var servers = Enumerable.Range(0, random.Next(1, 7)).Select(i =>
            {
                var s = random.Next(0, blocks);
                return Peer($"p{i}", s, random.Next(s + 1, blocks + 1), throughput: random.Next(0, 20));
            }).ToArray();
            var request = new RouteRequest { Servers = servers, Blocks = range, BannedPeers = servers.Where(_ => random.Next(4) == 0).Select(s => s.PeerId).ToHashSet() };
            var router = new MinLatencyRouter(new RouterOptions(), new Random(seed));
            if (Gaps(servers, range).Count > 0)
            {
                return Assert.Throws<RemoteChainException>(() => router.RouteForward(request)).Message.StartsWith($"no online server covers blocks {string.Join(", ", Gaps(servers, range))} (", StringComparison.Ordinal);
            }

            var route = router.RouteForward(request);
            var problem = Problem(route, request, servers);
            if (problem is not null)
            {
                throw new InvalidOperationException($"seed {seed}: {problem}");
            }

            // Greedy: a segment stops only where its server may not run the next block, or at the end of the range.
            return route.All(s => s.Blocks.End == range.End || !MayRun(s.Server, s.Blocks.End, servers, request.BannedPeers));
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Servers_that_are_not_online_are_never_chosen()
    {
        var servers = new[] { Peer("online", 0, 2, throughput: 1), Peer("joining", 0, 2, throughput: 1000, state: ServerState.Joining) };
        var router = new MinLatencyRouter(new RouterOptions(), new Random(3));
        var request = new RouteRequest { Servers = servers, Blocks = new BlockRange(0, 2) };
        for (var i = 0; i < 100; i++)
        {
            Assert.Equal("online", Assert.Single(router.RouteForward(request)).Server.PeerId);
        }
    }
}
