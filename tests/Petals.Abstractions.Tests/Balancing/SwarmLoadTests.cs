using Petals.Balancing;
using Petals.Discovery;
using Petals.Models;
using Petals.Transport;

namespace Petals.Abstractions.Tests.Balancing;

public sealed class SwarmLoadTests
{
    private static readonly PeerAddress Address = PeerAddress.Parse("tcp://127.0.0.1:1");
    private static readonly DateTimeOffset Now = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    private static ServerInfo Info(string id, int start, int end, double throughput, ServerState state = ServerState.Online, int expiresInSeconds = 60) =>
        new() { PeerId = id, Address = Address, State = state, Span = new BlockRange(start, end), Throughput = throughput, ExpiresAt = Now.AddSeconds(expiresInSeconds) };

    /// <summary>What discovery returns: each record under every block of its span.</summary>
    private static BlockServers[] Announced(int blocks, params ServerInfo[] infos) =>
        [.. Enumerable.Range(0, blocks).Select(b => new BlockServers(b, [.. infos.Where(i => i.Span.Contains(b))]))];

    [Fact]
    public void Throughput_is_the_least_summed_throughput_over_blocks()
    {
        var swarm = new SwarmLoad(4, [new("a", new BlockRange(0, 3), 2), new("b", new BlockRange(1, 4), 3), new("c", new BlockRange(3, 4), 0.5)]);

        Assert.Equal(4, swarm.BlockCount);
        Assert.Equal([2.0, 5, 5, 3.5], swarm.BlockThroughputs());
        Assert.Equal([1, 2, 2, 2], swarm.BlockHolders());
        Assert.Equal(2, swarm.Throughput);
        Assert.Equal(0.5, swarm.Without("b").Throughput);
        Assert.Equal(0, swarm.Without("a").Throughput);
        Assert.Equal(["a", "c"], swarm.Without("b").Servers.Select(s => s.PeerId));
        Assert.Same(swarm, swarm.Without("nobody"));
    }

    [Fact]
    public void Offline_servers_are_left_out()
    {
        var swarm = SwarmLoad.FromAnnouncements(4, Announced(4, Info("a", 0, 4, 1), Info("b", 0, 2, 5, ServerState.Offline), Info("c", 2, 4, 2, ServerState.Joining)));

        Assert.Equal(["a", "c"], swarm.Servers.Select(s => s.PeerId));
        Assert.Equal([1.0, 1, 3, 3], swarm.BlockThroughputs());
    }

    [Fact]
    public void The_latest_expiring_record_of_a_peer_wins()
    {
        // A server in the middle of a move: its old span's records expire first.
        var old = Info("a", 0, 2, 1, expiresInSeconds: 30);
        var moved = Info("a", 2, 4, 4, expiresInSeconds: 90);
        var older = Info("a", 1, 3, 9, expiresInSeconds: 10);

        var swarm = SwarmLoad.FromAnnouncements(4, Announced(4, old, moved, older));

        var server = Assert.Single(swarm.Servers);
        Assert.Equal(new ServerLoad("a", new BlockRange(2, 4), 4), server);
    }

    [Fact]
    public void Records_that_cannot_be_part_of_the_model_are_skipped()
    {
        var past = Info("past", 2, 9, 1);
        var negative = Info("neg", 0, 2, -1);
        var nan = Info("nan", 0, 2, double.NaN);
        var infinite = Info("inf", 0, 2, double.PositiveInfinity);
        var noId = Info(string.Empty, 0, 2, 1);
        var good = Info("good", 0, 4, 2);
        var blocks = new[] { new BlockServers(0, [past, negative, nan, infinite, noId, good]), new BlockServers(1, [good]) };

        var swarm = SwarmLoad.FromAnnouncements(4, blocks);

        Assert.Equal(new ServerLoad("good", new BlockRange(0, 4), 2), Assert.Single(swarm.Servers));
    }

    [Fact]
    public void Announced_servers_come_in_peer_id_order()
    {
        var swarm = SwarmLoad.FromAnnouncements(4, Announced(4, Info("c", 0, 1, 1), Info("a", 1, 2, 1), Info("b", 2, 4, 1)));

        Assert.Equal(["a", "b", "c"], swarm.Servers.Select(s => s.PeerId));
    }

    [Fact]
    public void The_constructor_refuses_a_view_that_is_not_one_of_the_model()
    {
        Assert.Equal("servers", Assert.Throws<ArgumentNullException>(() => new SwarmLoad(4, null!)).ParamName);
        Assert.Equal("blockCount", Assert.Throws<ArgumentOutOfRangeException>(() => new SwarmLoad(0, [])).ParamName);
        Assert.Equal("blocks", Assert.Throws<ArgumentNullException>(() => SwarmLoad.FromAnnouncements(4, null!)).ParamName);
        Assert.Equal("blockCount", Assert.Throws<ArgumentOutOfRangeException>(() => SwarmLoad.FromAnnouncements(-1, [])).ParamName);

        var twice = Assert.Throws<ArgumentException>(() => new SwarmLoad(4, [new("a", new BlockRange(0, 1), 1), new("a", new BlockRange(1, 2), 1)]));
        Assert.Equal("servers", twice.ParamName);
        Assert.Contains("'a'", twice.Message, StringComparison.Ordinal);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => new SwarmLoad(4, [new(string.Empty, new BlockRange(0, 1), 1)])).Message, StringComparison.Ordinal);

        var past = Assert.Throws<ArgumentException>(() => new SwarmLoad(4, [new("a", new BlockRange(2, 5), 1)]));
        Assert.Contains("span 2:5", past.Message, StringComparison.Ordinal);
        Assert.Contains("'a'", past.Message, StringComparison.Ordinal);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => new SwarmLoad(4, [new("a", default, 1)])).Message, StringComparison.Ordinal);

        foreach (var bad in new[] { -1, double.NaN, double.PositiveInfinity })
        {
            var error = Assert.Throws<ArgumentException>(() => new SwarmLoad(4, [new("a", new BlockRange(0, 1), bad)]));
            Assert.Contains("throughput", error.Message, StringComparison.Ordinal);
        }
    }
}
