using Petals.Client;
using Petals.Models;
using Petals.Protocol;
using Petals.Routing;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>Servers given by address (<see cref="RemoteTransformerBlocks.ConnectAsync(ITransport, IReadOnlyList{PeerAddress}, ModelConfig, string, RemoteSequenceOptions?, CancellationToken)"/>): their identities and the checks before any tensor is sent.</summary>
public sealed class FixedPeersTests
{
    private static readonly TimeSpan Bound = ClientRig.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Servers_that_share_a_handshake_peer_id_are_known_by_id_and_address_and_the_others_by_their_id()
    {
        await using var rig = await ClientRig.StartAsync(3, [new(0, 1), new(1, 2), new(2, 3)], o => o.PeerId = o.PeerId == "server-2" ? "server-2" : "twin");
        var addresses = rig.Swarm.Addresses;
        await using var remote = await ConnectAsync(rig, [addresses[2], addresses[0], addresses[1]]);

        string[] ids = [$"twin@{addresses[0]}", $"twin@{addresses[1]}", "server-2"];
        Assert.Equal(ids, remote.Spans.Select(s => s.PeerId));
        Assert.Equal(addresses, remote.Spans.Select(s => s.Address));
        Assert.Equal(ids, remote.Sequence.OnlineServers.Select(s => s.PeerId));

        // Each runs its block: the connections are found in the pool under those ids.
        await remote.ForwardAsync(new float[2 * rig.Config.HiddenSize], 1, 2, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.All(rig.Swarm.Servers, s => Assert.Equal((1, 1L), (s.GetStatistics().ActiveConnections, s.GetStatistics().ForwardCalls)));
    }

    [Fact]
    public async Task Servers_that_share_a_peer_id_and_a_span_are_two_servers_that_stand_in_for_each_other()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2), new(0, 2)], o => o.PeerId = "twin");
        await using var remote = await ConnectAsync(rig, rig.Swarm.Addresses);
        var ids = rig.Swarm.Addresses.Select(a => $"twin@{a}").ToArray();
        Assert.Equal(ids.Order(StringComparer.Ordinal), remote.Sequence.OnlineServers.Select(s => s.PeerId));

        // With the one in use banned, the other covers every block.
        var used = Assert.Single(remote.Spans).PeerId;
        var other = Assert.Single(ids, id => id != used);
        remote.Sequence.Health.ReportFailure(used, PeerFailureKind.ConnectionLost);
        Assert.Equal([other], remote.Sequence.RouteInference(1, 8).Select(s => s.Server.PeerId));
        await remote.ForwardAsync(new float[rig.Config.HiddenSize], 1, 1, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(1, rig.Swarm.Servers[Array.IndexOf(ids, other)].GetStatistics().ForwardCalls);
    }

    [Fact]
    public async Task The_problems_of_several_servers_are_all_listed_in_one_error_and_every_connection_is_closed()
    {
        // Server 0 refuses fp16, server 1 runs a block past the 3-block model, and block 1 has no server.
        await using var rig = await ClientRig.StartAsync(4, [new(0, 1), new(2, 4)], o => o.Codecs = o.PeerId == "server-0" ? WireCodecs.Fp32 : WireCodecs.All);
        var (a, b) = (rig.Swarm.Addresses[0], rig.Swarm.Addresses[1]);

        var error = await Assert.ThrowsAsync<RemoteChainException>(
            () => ConnectAsync(rig, [b, a], rig.Config with { NumLayers = 3 }, new RemoteSequenceOptions { Codec = WireCodec.Fp16 }));
        Assert.Equal(
            $"The servers cannot run the model's 3 blocks: server 'server-0' at {a} does not accept hidden states as Fp16 (it accepts Fp32); "
            + $"server 'server-1' at {b} runs blocks up to 4, but the model has 3; no server covers blocks 1:2. Servers: {a} = 0:1, {b} = 2:4.",
            error.Message);
        await rig.WaitForNoConnectionsAsync();
    }

    [Fact]
    public async Task A_server_that_cannot_be_reached_fails_connecting_and_the_connections_made_are_closed()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var nobody = PeerAddress.Parse($"mem://nobody-{Guid.NewGuid():N}");
        var error = await Assert.ThrowsAsync<TransportException>(() => ConnectAsync(rig, [rig.Swarm.Addresses[0], nobody]));
        Assert.Contains(nobody.ToString(), error.Message, StringComparison.Ordinal);
        await rig.WaitForNoConnectionsAsync();
    }

    private static Task<RemoteTransformerBlocks> ConnectAsync(ClientRig rig, IReadOnlyList<PeerAddress> addresses, ModelConfig? config = null, RemoteSequenceOptions? options = null) =>
        RemoteTransformerBlocks.ConnectAsync(rig.Swarm.Transport, addresses, config ?? rig.Config, Swarm.ModelId, options, Ct).WaitAsync(Bound, Ct);
}
