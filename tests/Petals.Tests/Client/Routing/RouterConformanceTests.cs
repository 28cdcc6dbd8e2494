using Petals.Client;
using Petals.Client.Routing;
using Petals.Discovery;
using Petals.Models;
using Petals.Routing;
using static Petals.Tests.Client.Routing.RoutingSwarm;

namespace Petals.Tests.Client.Routing;

/// <summary>
/// What every <see cref="IRouter"/> must do, whatever its cost model: routes tile the requested blocks with segments
/// inside their servers' spans, only online servers are used, a banned server only where nobody else is, and a
/// missing block is an error naming it. Each implementation subclasses this suite.
/// </summary>
public abstract class RouterConformanceTests
{
    /// <summary>The router under test.</summary>
    protected abstract IRouter CreateRouter();

    public static TheoryData<string> Kinds => new() { "inference", "forward" };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Routes_tile_the_requested_blocks_inside_the_servers_spans(string kind)
    {
        var servers = new[] { Peer("a", 0, 3), Peer("b", 2, 6), Peer("c", 5, 8), Peer("d", 0, 8, throughput: 1) };
        var router = CreateRouter();
        foreach (var range in new[] { new BlockRange(0, 8), new BlockRange(1, 7), new BlockRange(4, 5), new BlockRange(7, 8) })
        {
            var request = new RouteRequest { Servers = servers, Blocks = range };
            var route = Route(router, kind, request);
            Assert.Null(Problem(route, request, servers));
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Only_online_servers_are_used(string kind)
    {
        var servers = new[] { Peer("online", 0, 4, throughput: 1), Peer("joining", 0, 4, throughput: 1000, state: ServerState.Joining), Peer("offline", 0, 4, throughput: 1000, state: ServerState.Offline) };
        var route = Route(CreateRouter(), kind, new RouteRequest { Servers = servers, Blocks = new BlockRange(0, 4) });
        Assert.All(route, s => Assert.Equal("online", s.Server.PeerId));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void A_banned_server_is_avoided_unless_a_block_has_no_other_server(string kind)
    {
        var servers = new[] { Peer("banned", 0, 4, throughput: 1000), Peer("head", 0, 3, throughput: 1) };
        var request = new RouteRequest { Servers = servers, Blocks = new BlockRange(0, 4), BannedPeers = new HashSet<string> { "banned" } };
        var route = Route(CreateRouter(), kind, request);
        Assert.Equal([("head", new BlockRange(0, 3)), ("banned", new BlockRange(3, 4))], route.Select(s => (s.Server.PeerId, s.Blocks)));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void A_block_without_a_server_is_an_error_naming_it(string kind)
    {
        var request = new RouteRequest { Servers = [Peer("a", 0, 2), Peer("b", 3, 5)], Blocks = new BlockRange(1, 5), ModelId = "m" };
        var router = CreateRouter();
        var error = Assert.Throws<RemoteChainException>(() => Route(router, kind, request));
        Assert.Contains("blocks 2:3 of model m", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void A_peer_listed_twice_is_refused(string kind)
    {
        var request = new RouteRequest { Servers = [Peer("a", 0, 2), Peer("a", 0, 2)], Blocks = new BlockRange(0, 2) };
        var router = CreateRouter();
        Assert.Throws<ArgumentException>(() => Route(router, kind, request));
    }

    private static IReadOnlyList<RouteSegment> Route(IRouter router, string kind, RouteRequest request) =>
        kind == "inference" ? router.RouteInference(request) : router.RouteForward(request);
}
