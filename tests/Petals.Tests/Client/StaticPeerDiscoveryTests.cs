using Petals.Client;
using Petals.Discovery;
using Petals.Models;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>A read-only discovery over a fixed list of servers.</summary>
public sealed class StaticPeerDiscoveryTests
{
    private static readonly ServerInfo A = Server("a", 0, 2);
    private static readonly ServerInfo B = Server("b", 1, 4);
    private static readonly ServerInfo C = Server("c", 4, 5);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Each_server_is_listed_under_exactly_the_blocks_of_its_span_in_block_order()
    {
        var discovery = new StaticPeerDiscovery("m", 5, [C, A, B]);
        var blocks = await discovery.GetServersAsync("m", new BlockRange(0, 5), Ct);
        Assert.Equal([0, 1, 2, 3, 4], blocks.Select(b => b.Block));
        Assert.Equal([["a"], ["a", "b"], ["b"], ["b"], ["c"]], blocks.Select(b => b.Servers.Select(s => s.PeerId).Order(StringComparer.Ordinal).ToArray()));
        Assert.Same(A, blocks[0].Servers[0]); // the announcements as given

        var middle = await discovery.GetServersAsync("m", new BlockRange(2, 4), Ct);
        Assert.Equal([(2, "b"), (3, "b")], middle.Select(b => (b.Block, Assert.Single(b.Servers).PeerId)));
        Assert.Empty(await discovery.GetServersAsync("m", default, Ct));
    }

    [Fact]
    public async Task Another_model_has_every_block_listed_with_no_server()
    {
        var discovery = new StaticPeerDiscovery("m", 5, [A, B, C]);
        var blocks = await discovery.GetServersAsync("other", new BlockRange(0, 5), Ct);
        Assert.Equal([0, 1, 2, 3, 4], blocks.Select(b => b.Block));
        Assert.All(blocks, b => Assert.Empty(b.Servers));
        Assert.Equal("modelId", (await Assert.ThrowsAsync<ArgumentException>(() => discovery.GetServersAsync("", new BlockRange(0, 5), Ct))).ParamName);
    }

    [Fact]
    public async Task The_model_is_listed_with_its_block_and_server_counts_and_nothing_is_listed_without_servers()
    {
        Assert.Equal([new SwarmModelInfo("m", 5, 3)], await new StaticPeerDiscovery("m", 5, [A, B, C]).GetModelsAsync(Ct));
        Assert.Empty(await new StaticPeerDiscovery("m", 5, []).GetModelsAsync(Ct));
    }

    [Fact]
    public async Task The_servers_are_copied_when_the_discovery_is_made()
    {
        var servers = new List<ServerInfo> { A };
        var discovery = new StaticPeerDiscovery("m", 5, servers, localPeerId: "client-1");
        servers.Add(B);
        Assert.Equal([A], discovery.Servers);
        Assert.Equal(["a"], (await discovery.GetServersAsync("m", new BlockRange(1, 2), Ct))[0].Servers.Select(s => s.PeerId));
        Assert.Equal("client-1", discovery.LocalPeerId);
        Assert.Equal("static", new StaticPeerDiscovery("m", 5, []).LocalPeerId);
    }

    [Fact]
    public async Task An_announcement_is_refused_as_not_supported()
    {
        var discovery = new StaticPeerDiscovery("m", 5, [A]);
        await Assert.ThrowsAsync<NotSupportedException>(() => discovery.AnnounceAsync("m", 5, C, TimeSpan.FromMinutes(1), Ct));
        Assert.Equal([A], discovery.Servers);
    }

    [Fact]
    public void A_missing_model_id_or_a_non_positive_block_count_is_refused_naming_the_argument()
    {
        Assert.Equal("modelId", Assert.Throws<ArgumentException>(() => new StaticPeerDiscovery("", 5, [A])).ParamName);
        Assert.Equal("modelId", Assert.Throws<ArgumentNullException>(() => new StaticPeerDiscovery(null!, 5, [A])).ParamName);
        Assert.Equal("blockCount", Assert.Throws<ArgumentOutOfRangeException>(() => new StaticPeerDiscovery("m", 0, [A])).ParamName);
        Assert.Equal("servers", Assert.Throws<ArgumentNullException>(() => new StaticPeerDiscovery("m", 5, null!)).ParamName);
        Assert.Equal("servers", Assert.Throws<ArgumentNullException>(() => new StaticPeerDiscovery("m", 5, [A, null!])).ParamName);
        Assert.Equal("localPeerId", Assert.Throws<ArgumentException>(() => new StaticPeerDiscovery("m", 5, [A], "")).ParamName);
    }

    [Theory]
    [InlineData(3, 6)]
    [InlineData(0, 6)]
    [InlineData(5, 6)]
    public void A_span_past_the_model_is_refused_naming_the_server(int start, int end)
    {
        AssertRefusedSpan(Server("x", start, end), $"{start}:{end}");
    }

    [Fact]
    public void A_server_without_a_span_is_refused_naming_it()
    {
        AssertRefusedSpan(Server("x", 0, 1) with { Span = default }, "0:0");
    }

    [Fact]
    public void A_peer_id_listed_twice_is_refused_naming_it()
    {
        var error = Assert.Throws<ArgumentException>(() => new StaticPeerDiscovery("m", 5, [A, B, Server("a", 3, 5)]));
        Assert.Equal("servers", error.ParamName);
        Assert.StartsWith("Server a is listed twice.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_canceled_read_is_canceled()
    {
        var discovery = new StaticPeerDiscovery("m", 5, [A]);
        using var canceled = new CancellationTokenSource();
        await canceled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => discovery.GetServersAsync("m", new BlockRange(0, 5), canceled.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => discovery.GetModelsAsync(canceled.Token));
    }

    private static void AssertRefusedSpan(ServerInfo server, string span)
    {
        var error = Assert.Throws<ArgumentException>(() => new StaticPeerDiscovery("m", 5, [A, server]));
        Assert.Equal("servers", error.ParamName);
        Assert.StartsWith($"Server x has span {span}, not a non-empty range of the model's 5 blocks.", error.Message, StringComparison.Ordinal);
    }

    private static ServerInfo Server(string peerId, int start, int end) => new()
    {
        PeerId = peerId,
        Address = PeerAddress.Parse($"mem://{peerId}"),
        State = ServerState.Online,
        Span = new BlockRange(start, end),
    };
}
