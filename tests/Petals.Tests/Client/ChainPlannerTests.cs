using FsCheck;
using FsCheck.Fluent;
using Petals.Client;
using Petals.Discovery;
using Petals.Models;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>The chain choice against a brute-force enumeration of every tiling, and the reduction of announcements.</summary>
public sealed class ChainPlannerTests
{
    private static readonly SwarmSequenceOptions Options = new();
    private static readonly DateTimeOffset Now = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void The_planned_chain_tiles_every_block_and_costs_no_more_than_any_tiling()
    {
        Prop.ForAll(Arb.From(Gen.Choose(0, int.MaxValue)), seed =>
        {
            var random = new Random(seed);
            var blocks = random.Next(1, 7);
            var servers = RandomServers(random, blocks, random.Next(0, 9));
            var exclude = servers.Where(_ => random.Next(5) == 0).Select(s => s.PeerId).ToHashSet(StringComparer.Ordinal);
            var chain = ChainPlanner.Plan(servers, blocks, Options, exclude);
            var best = BruteForce(servers.Where(s => !exclude.Contains(s.PeerId)).ToArray(), blocks);
            if (best is null)
            {
                return chain is null;
            }

            if (chain is null || chain[0].Span.Start != 0 || chain[^1].Span.End != blocks)
            {
                return false;
            }

            for (var i = 1; i < chain.Length; i++)
            {
                if (chain[i].Span.Start != chain[i - 1].Span.End)
                {
                    return false;
                }
            }

            return chain.All(s => !exclude.Contains(s.PeerId)) && Math.Abs(ChainPlanner.Cost(chain, Options) - best.Value) <= 1e-9 * Math.Max(1, best.Value);
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void The_choice_does_not_depend_on_the_order_servers_are_listed_in()
    {
        Prop.ForAll(Arb.From(Gen.Choose(0, int.MaxValue)), seed =>
        {
            var random = new Random(seed);
            var blocks = random.Next(1, 6);
            var servers = RandomServers(random, blocks, random.Next(1, 8), coarse: true);
            var shuffled = servers.OrderBy(_ => random.Next()).ToArray();
            var a = ChainPlanner.Plan(servers, blocks, Options, null);
            var b = ChainPlanner.Plan(shuffled, blocks, Options, null);
            return (a is null && b is null) || (a is not null && b is not null && a.Select(s => s.PeerId).SequenceEqual(b.Select(s => s.PeerId)));
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void An_unmeasured_server_is_costed_at_the_default_throughput()
    {
        var unmeasured = Server("a", 0, 2, throughput: 0);
        var measured = Server("b", 0, 2, throughput: 15);
        Assert.Equal("b", ChainPlanner.Plan([unmeasured, measured], 2, Options, null)!.Single().PeerId);
        Assert.Equal("a", ChainPlanner.Plan([unmeasured, measured], 2, new SwarmSequenceOptions { DefaultThroughput = 20 }, null)!.Single().PeerId);
    }

    [Fact]
    public void Equal_chains_are_broken_by_the_smaller_peer_id()
    {
        Assert.Equal("m", ChainPlanner.Plan([Server("z", 0, 3), Server("m", 0, 3), Server("q", 0, 3)], 3, Options, null)!.Single().PeerId);
    }

    [Fact]
    public void Collect_keeps_one_entry_per_server_from_its_latest_announcement()
    {
        // The 5-minute records are the latest announcement; the 1-minute one (another span, offline) is a leftover.
        var leftover = Server("a", 0, 1) with { ExpiresAt = Now.AddMinutes(1), State = ServerState.Offline };
        var latest = Server("a", 1, 3) with { ExpiresAt = Now.AddMinutes(5) };
        var expired = Server("b", 0, 3) with { ExpiresAt = Now.AddSeconds(-1) };
        var view = ChainPlanner.Collect([new BlockServers(0, [leftover, expired]), new BlockServers(1, [latest]), new BlockServers(2, [latest])], 3, Now);
        var server = Assert.Single(view.Online);
        Assert.Equal(new BlockRange(1, 3), server.Span);
        Assert.Equal(Now.AddMinutes(5), server.ExpiresAt);
        Assert.Empty(view.Ignored);
    }

    [Fact]
    public void Collect_ignores_a_record_stored_under_a_block_outside_its_span_and_a_server_offline_on_any_block()
    {
        var misplaced = Server("a", 0, 1);
        var halfOffline = Server("b", 0, 2);
        var view = ChainPlanner.Collect(
            [new BlockServers(0, [halfOffline]), new BlockServers(1, [misplaced, halfOffline with { State = ServerState.Offline }])],
            2,
            Now);
        Assert.Empty(view.Online);
        Assert.Equal("server a is ignored: it announces span 0:1 under block 1, outside that span", Assert.Single(view.Ignored));
    }

    private static ServerInfo Server(string id, int start, int end, double throughput = 100) => new()
    {
        PeerId = id,
        Address = PeerAddress.Parse($"mem://{id}"),
        State = ServerState.Online,
        Span = new BlockRange(start, end),
        Throughput = throughput,
        ExpiresAt = Now.AddMinutes(5),
    };

    private static ServerInfo[] RandomServers(Random random, int blocks, int count, bool coarse = false)
    {
        var servers = new ServerInfo[count];
        for (var i = 0; i < count; i++)
        {
            var start = random.Next(blocks);
            var end = random.Next(start + 1, blocks + 1);
            var throughput = coarse ? random.Next(0, 3) * 50 : random.Next(4) == 0 ? 0 : random.NextDouble() * 1000;
            servers[i] = Server($"peer{i:D2}", start, end, throughput);
        }

        // Some measured RTTs between random pairs.
        for (var i = 0; i < count; i++)
        {
            var rtts = new Dictionary<string, TimeSpan>();
            for (var j = 0; j < count; j++)
            {
                if (i != j && random.Next(3) == 0)
                {
                    rtts[servers[j].PeerId] = coarse ? TimeSpan.FromMilliseconds(random.Next(0, 3) * 20) : TimeSpan.FromMilliseconds(random.NextDouble() * 200);
                }
            }

            servers[i] = servers[i] with { NextServerRtts = rtts };
        }

        return servers;
    }

    private static double? BruteForce(ServerInfo[] servers, int blocks)
    {
        double? best = null;
        var chain = new List<ServerInfo>();

        void Walk(int at)
        {
            if (at == blocks)
            {
                var cost = ChainPlanner.Cost(chain, Options);
                best = best is null ? cost : Math.Min(best.Value, cost);
                return;
            }

            foreach (var server in servers.Where(s => s.Span.Start == at && s.Span.End <= blocks))
            {
                chain.Add(server);
                Walk(server.Span.End);
                chain.RemoveAt(chain.Count - 1);
            }
        }

        Walk(0);
        return best;
    }
}
