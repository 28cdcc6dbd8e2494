using Petals.Discovery.Tests.Network;
using Petals.Models;
using Petals.Transport;

namespace Petals.Discovery.Tests.Announcements;

/// <summary>DhtPeerDiscovery over a 20-node in-memory DHT: announcements per block, the model index, replacement, expiry, and bad input.</summary>
public sealed class DhtPeerDiscoveryTests
{
    private const string Model = "stories260K-f32:llama-5x64-v512";
    private static readonly TimeSpan Bound = DhtTestNetwork.Bound;
    private static readonly TimeSpan Ttl = TimeSpan.FromMinutes(3);

    private static ServerInfo Info(DhtPeerDiscovery discovery, int start, int end, ServerState state = ServerState.Online, double throughput = 10) => new()
    {
        PeerId = discovery.LocalPeerId,
        Address = PeerAddress.Parse($"tcp://127.0.0.1:{5000 + start}"),
        State = state,
        Span = new BlockRange(start, end),
        Throughput = throughput,
        CacheTokensLeft = 4096,
        Version = "test",
    };

    private static async Task<(DhtTestNetwork Network, DhtPeerDiscovery[] Discoveries)> BuildAsync(CancellationToken ct)
    {
        var network = new DhtTestNetwork();
        await network.BuildAsync(20, new Random(4), ct);
        return (network, network.Nodes.Select(n => new DhtPeerDiscovery(n, network.Time)).ToArray());
    }

    [Fact]
    public async Task Three_servers_announce_their_spans_and_any_node_reads_every_block_and_the_model_index()
    {
        var ct = TestContext.Current.CancellationToken;
        var (network, peers) = await BuildAsync(ct);
        await using var _ = network;
        Assert.Equal(2, await peers[1].AnnounceAsync(Model, 5, Info(peers[1], 0, 2), Ttl, ct).WaitAsync(Bound, ct));
        Assert.Equal(2, await peers[2].AnnounceAsync(Model, 5, Info(peers[2], 2, 4, throughput: 20), Ttl, ct).WaitAsync(Bound, ct));
        Assert.Equal(1, await peers[3].AnnounceAsync(Model, 5, Info(peers[3], 4, 5) with { PublicName = "lab" }, Ttl, ct).WaitAsync(Bound, ct));
        await peers[4].AnnounceAsync("other-model", 2, Info(peers[4], 0, 2), Ttl, ct).WaitAsync(Bound, ct);

        var blocks = await peers[19].GetServersAsync(Model, new BlockRange(0, 5), ct).WaitAsync(Bound, ct);
        Assert.Equal([0, 1, 2, 3, 4], blocks.Select(b => b.Block));
        string[] owners = [peers[1].LocalPeerId, peers[1].LocalPeerId, peers[2].LocalPeerId, peers[2].LocalPeerId, peers[3].LocalPeerId];
        for (var b = 0; b < 5; b++)
        {
            var server = Assert.Single(blocks[b].Servers);
            Assert.Equal(owners[b], server.PeerId);
            Assert.Equal(ServerState.Online, server.State);
            Assert.True(server.Span.Contains(b));
            Assert.Equal(network.Time.GetUtcNow() + Ttl, server.ExpiresAt);
        }

        Assert.Equal(20, blocks[2].Servers[0].Throughput);
        Assert.Equal("lab", blocks[4].Servers[0].PublicName);
        Assert.Equal(PeerAddress.Parse("tcp://127.0.0.1:5002"), blocks[3].Servers[0].Address);

        var tail = await peers[0].GetServersAsync(Model, new BlockRange(3, 7), ct).WaitAsync(Bound, ct);
        Assert.Equal([3, 4, 5, 6], tail.Select(b => b.Block));
        Assert.Empty(tail[2].Servers);

        var models = await peers[10].GetModelsAsync(ct).WaitAsync(Bound, ct);
        Assert.Equal([new SwarmModelInfo("other-model", 2, 1), new SwarmModelInfo(Model, 5, 3)], models);
    }

    [Fact]
    public async Task A_later_announcement_replaces_the_earlier_one_even_with_a_shorter_time_to_live()
    {
        var ct = TestContext.Current.CancellationToken;
        var (network, peers) = await BuildAsync(ct);
        await using var _ = network;
        var server = peers[5];
        await server.AnnounceAsync(Model, 5, Info(server, 0, 5, ServerState.Joining), Ttl, ct).WaitAsync(Bound, ct);
        await server.AnnounceAsync(Model, 5, Info(server, 0, 5, ServerState.Online), Ttl, ct).WaitAsync(Bound, ct);
        var online = (await peers[12].GetServersAsync(Model, new BlockRange(0, 5), ct).WaitAsync(Bound, ct)).Select(b => Assert.Single(b.Servers)).ToArray();
        Assert.All(online, s => Assert.Equal(ServerState.Online, s.State));

        // Same instant, shorter TTL: the expiration is still raised past the previous one, so the offline record wins.
        await server.AnnounceAsync(Model, 5, Info(server, 0, 5, ServerState.Offline), TimeSpan.FromSeconds(10), ct).WaitAsync(Bound, ct);
        var offline = (await peers[13].GetServersAsync(Model, new BlockRange(0, 5), ct).WaitAsync(Bound, ct)).Select(b => Assert.Single(b.Servers)).ToArray();
        Assert.All(offline, s => Assert.Equal(ServerState.Offline, s.State));
        Assert.All(offline, s => Assert.True(s.ExpiresAt > online[0].ExpiresAt));
    }

    [Fact]
    public async Task Announcements_that_are_not_renewed_expire()
    {
        var ct = TestContext.Current.CancellationToken;
        var (network, peers) = await BuildAsync(ct);
        await using var _ = network;
        await peers[6].AnnounceAsync(Model, 5, Info(peers[6], 0, 5), TimeSpan.FromSeconds(30), ct).WaitAsync(Bound, ct);
        await peers[7].AnnounceAsync(Model, 5, Info(peers[7], 0, 5), TimeSpan.FromMinutes(10), ct).WaitAsync(Bound, ct);
        network.Time.Advance(TimeSpan.FromSeconds(31));
        var blocks = await peers[14].GetServersAsync(Model, new BlockRange(0, 5), ct).WaitAsync(Bound, ct);
        Assert.All(blocks, b => Assert.Equal(peers[7].LocalPeerId, Assert.Single(b.Servers).PeerId));
        Assert.Equal(1, Assert.Single(await peers[14].GetModelsAsync(ct).WaitAsync(Bound, ct)).ServerCount);
    }

    [Fact]
    public async Task A_signed_record_whose_value_is_not_an_announcement_is_skipped_and_counted()
    {
        var ct = TestContext.Current.CancellationToken;
        var (network, peers) = await BuildAsync(ct);
        await using var _ = network;
        var rogue = network.Nodes[8];
        await rogue.StoreAsync(DhtRecord.Create(rogue.Identity, DhtPeerDiscovery.GetBlockKey(Model, 0), [1, 2, 3], network.Time.GetUtcNow().AddMinutes(5)), ct).WaitAsync(Bound, ct);
        await rogue.StoreAsync(DhtRecord.Create(rogue.Identity, DhtPeerDiscovery.ModelIndexKey, [1, 0], network.Time.GetUtcNow().AddMinutes(5)), ct).WaitAsync(Bound, ct);
        await peers[9].AnnounceAsync(Model, 5, Info(peers[9], 0, 5), Ttl, ct).WaitAsync(Bound, ct);
        var reader = peers[15];
        var block0 = (await reader.GetServersAsync(Model, new BlockRange(0, 1), ct).WaitAsync(Bound, ct))[0];
        Assert.Equal(peers[9].LocalPeerId, Assert.Single(block0.Servers).PeerId);
        Assert.Equal(new SwarmModelInfo(Model, 5, 1), Assert.Single(await reader.GetModelsAsync(ct).WaitAsync(Bound, ct)));
        Assert.Equal(2, reader.MalformedRecordCount);
    }

    [Fact]
    public async Task A_model_entry_with_an_absurd_block_count_is_skipped_not_listed()
    {
        var ct = TestContext.Current.CancellationToken;
        var (network, peers) = await BuildAsync(ct);
        await using var _ = network;

        // A rogue peer lists the model with 2^31-1 blocks: it ties with the one honest server, and the larger count
        // would win, sending readers (petals status) to look up two billion block keys.
        var rogue = network.Nodes[8];
        var entry = ServerInfoCodec.EncodeModelEntry(Model, 5);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(entry.AsSpan(entry.Length - 4), int.MaxValue);
        await rogue.StoreAsync(DhtRecord.Create(rogue.Identity, DhtPeerDiscovery.ModelIndexKey, entry, network.Time.GetUtcNow().AddMinutes(5)), ct).WaitAsync(Bound, ct);
        await peers[9].AnnounceAsync(Model, 5, Info(peers[9], 0, 5), Ttl, ct).WaitAsync(Bound, ct);

        var reader = peers[15];
        Assert.Equal(new SwarmModelInfo(Model, 5, 1), Assert.Single(await reader.GetModelsAsync(ct).WaitAsync(Bound, ct)));
        Assert.Equal(1, reader.MalformedRecordCount);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => peers[9].AnnounceAsync(Model, ServerInfoCodec.MaxBlockCount + 1, Info(peers[9], 0, 5), Ttl, ct));
    }

    [Fact]
    public async Task A_cancelled_call_is_cancelled_even_on_a_node_alone_that_asks_nobody()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var alone = new DhtPeerDiscovery(await network.AddAsync(null, ct), network.Time);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => alone.GetModelsAsync(cancelled.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => alone.GetServersAsync(Model, new BlockRange(0, 2), cancelled.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => alone.AnnounceAsync(Model, 5, Info(alone, 0, 2), Ttl, cancelled.Token));
        Assert.Equal(0, alone.Node.Storage.RecordCount);
    }

    [Fact]
    public async Task Misuse_is_refused_precisely()
    {
        var ct = TestContext.Current.CancellationToken;
        var (network, peers) = await BuildAsync(ct);
        await using var _ = network;
        var peer = peers[0];
        var foreign = Info(peer, 0, 2) with { PeerId = peers[1].LocalPeerId };
        Assert.Contains("is not this node's id", (await Assert.ThrowsAsync<ArgumentException>(() => peer.AnnounceAsync(Model, 5, foreign, Ttl, ct))).Message, StringComparison.Ordinal);
        Assert.Contains("goes past the model's 5 blocks", (await Assert.ThrowsAsync<ArgumentException>(() => peer.AnnounceAsync(Model, 5, Info(peer, 3, 6), Ttl, ct))).Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => peer.AnnounceAsync(Model, 5, Info(peer, 0, 2), TimeSpan.Zero, ct));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => peer.AnnounceAsync(Model, 5, Info(peer, 0, 2), TimeSpan.FromHours(7), ct));
        await Assert.ThrowsAsync<ArgumentException>(() => peer.AnnounceAsync(new string('m', 241), 5, Info(peer, 0, 2), Ttl, ct));
        await Assert.ThrowsAsync<ArgumentException>(() => peer.GetServersAsync(string.Empty, new BlockRange(0, 1), ct));
        Assert.Equal("m.3", DhtPeerDiscovery.GetBlockKey("m", 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DhtPeerDiscovery(network.Nodes[0], maxParallelLookups: 0));
    }
}
