using Petals.Discovery;
using Petals.Models;
using Petals.Testing.Discovery;
using Petals.Testing.Time;
using Petals.Transport;

namespace Petals.Testing.Tests.Discovery;

/// <summary>What the in-memory swarm adds beyond the conformance suite: peer ids, shared identities, its clock.</summary>
public sealed class MemoryDiscoveryNetworkTests
{
    private static readonly TimeSpan Ttl = TimeSpan.FromMinutes(1);

    private static ServerInfo Info(IPeerDiscovery peer, int start, int end) => new()
    {
        PeerId = peer.LocalPeerId,
        Address = PeerAddress.Parse($"mem://server-{start}"),
        State = ServerState.Online,
        Span = new BlockRange(start, end),
    };

    [Fact]
    public void Peers_get_sequential_ids_unless_given_one_and_an_empty_id_is_refused()
    {
        var network = new MemoryDiscoveryNetwork();
        Assert.Same(TimeProvider.System, network.TimeProvider);
        Assert.Equal("mem-peer-1", network.CreatePeer().LocalPeerId);
        Assert.Equal("server-a", network.CreatePeer("server-a").LocalPeerId);
        var third = network.CreatePeer();
        Assert.Equal("mem-peer-2", third.LocalPeerId);
        Assert.Same(network, third.Network);
        Assert.Equal("peerId", Assert.Throws<ArgumentException>(() => network.CreatePeer(string.Empty)).ParamName);
    }

    [Fact]
    public async Task Two_peers_with_one_id_act_as_one_peer_and_separate_networks_share_nothing()
    {
        var ct = TestContext.Current.CancellationToken;
        var network = new MemoryDiscoveryNetwork(new ManualTimeProvider());
        var before = network.CreatePeer("server");
        var restarted = network.CreatePeer("server");
        await before.AnnounceAsync("m", 4, Info(before, 0, 4), Ttl, ct);
        await restarted.AnnounceAsync("m", 4, Info(restarted, 0, 2) with { State = ServerState.Offline }, Ttl, ct);

        var reader = network.CreatePeer();
        var blocks = await reader.GetServersAsync("m", new BlockRange(0, 4), ct);
        Assert.Equal([ServerState.Offline, ServerState.Offline, ServerState.Online, ServerState.Online], blocks.Select(b => Assert.Single(b.Servers).State));
        Assert.Equal([new SwarmModelInfo("m", 4, 1)], await reader.GetModelsAsync(ct));

        var elsewhere = new MemoryDiscoveryNetwork().CreatePeer();
        Assert.Empty(await elsewhere.GetModelsAsync(ct));
    }

    [Fact]
    public async Task Servers_disagreeing_on_a_block_count_list_the_count_most_announce_and_the_larger_on_a_tie()
    {
        var ct = TestContext.Current.CancellationToken;
        var network = new MemoryDiscoveryNetwork(new ManualTimeProvider());
        var peers = Enumerable.Range(0, 3).Select(_ => network.CreatePeer()).ToArray();
        await peers[0].AnnounceAsync("m", 8, Info(peers[0], 0, 2), Ttl, ct);
        await peers[1].AnnounceAsync("m", 6, Info(peers[1], 0, 2), Ttl, ct);
        Assert.Equal(8, Assert.Single(await peers[2].GetModelsAsync(ct)).BlockCount);
        await peers[2].AnnounceAsync("m", 6, Info(peers[2], 0, 2), Ttl, ct);
        Assert.Equal(new SwarmModelInfo("m", 6, 3), Assert.Single(await peers[0].GetModelsAsync(ct)));
    }

    [Fact]
    public async Task One_peer_may_list_several_models_in_the_index()
    {
        var ct = TestContext.Current.CancellationToken;
        var network = new MemoryDiscoveryNetwork(new ManualTimeProvider());
        var server = network.CreatePeer();
        await server.AnnounceAsync("a", 2, Info(server, 0, 2), Ttl, ct);
        await server.AnnounceAsync("b", 3, Info(server, 0, 3), Ttl, ct);
        Assert.Equal([new SwarmModelInfo("a", 2, 1), new SwarmModelInfo("b", 3, 1)], await network.CreatePeer().GetModelsAsync(ct));
    }
}
