using Petals.Client;
using Petals.Discovery;
using Petals.Models;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>How one read of the swarm's announcements is reduced to the online servers a sequence manager routes over.</summary>
public sealed class SwarmViewTests
{
    private static readonly DateTimeOffset Now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Collect_keeps_one_entry_per_server_from_its_latest_announcement()
    {
        // The 5-minute records are the latest announcement; the 1-minute one (another span, offline) is a leftover.
        var leftover = Server("a", 0, 1) with { ExpiresAt = Now.AddMinutes(1), State = ServerState.Offline };
        var latest = Server("a", 1, 3) with { ExpiresAt = Now.AddMinutes(5) };
        var expired = Server("b", 0, 3) with { ExpiresAt = Now.AddSeconds(-1) };
        var view = SwarmView.Collect([new BlockServers(0, [leftover, expired]), new BlockServers(1, [latest]), new BlockServers(2, [latest])], 3, Now);
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
        var view = SwarmView.Collect(
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
}
