using Petals.Health;
using Petals.Models;
using Petals.Protocol;
using Petals.Tests.Client;
using Petals.Transport;

namespace Petals.Tests.Health;

/// <summary>One probe of a server: connect, check the announced peer id, time a ping, close.</summary>
public sealed class PeerProbeTests
{
    private static readonly TimeSpan Bound = ClientRig.Bound;
    private static readonly ConnectionPreamble Local = new("probe-client", Swarm.ModelId);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_probe_of_a_live_server_times_a_positive_round_trip_and_closes_its_connection()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var rtt = await PeerProbe.ProbeAsync(rig.Swarm.Transport, rig.Swarm.Info(0), Local, Ct).WaitAsync(Bound, Ct);
        Assert.True(rtt > TimeSpan.Zero && rtt < Bound, $"round trip {rtt}");
        Assert.Equal(1, rig.Swarm.Servers[0].GetStatistics().ConnectionsAccepted);
        await rig.WaitForNoConnectionsAsync();
    }

    [Fact]
    public async Task A_server_that_is_not_the_announced_peer_is_refused_naming_both_ids()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var announced = rig.Swarm.Info(0) with { PeerId = "announced-peer" };
        var error = await Assert.ThrowsAsync<PeerProbeException>(() => PeerProbe.ProbeAsync(rig.Swarm.Transport, announced, Local, Ct).WaitAsync(Bound, Ct));
        Assert.Equal($"the server at {announced.Address} introduced itself as 'server-0', not as the announced 'announced-peer'", error.Message);
        await rig.WaitForNoConnectionsAsync();
    }

    [Fact]
    public async Task A_server_of_another_model_fails_the_handshake()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var error = await Assert.ThrowsAsync<ProtocolException>(
            () => PeerProbe.ProbeAsync(rig.Swarm.Transport, rig.Swarm.Info(0), Local with { ModelId = "another-model" }, Ct).WaitAsync(Bound, Ct));
        Assert.Equal(ProtocolErrorCode.ModelMismatch, error.Code);
    }

    [Fact]
    public async Task An_address_where_nothing_listens_fails_with_a_transport_error()
    {
        await using var rig = await ClientRig.StartAsync(2, []);
        var dead = ClientRig.Dead("dead", new BlockRange(0, 2), throughput: 1);
        var error = await Assert.ThrowsAsync<TransportException>(() => PeerProbe.ProbeAsync(rig.Swarm.Transport, dead, Local, Ct).WaitAsync(Bound, Ct));
        Assert.Contains(dead.Address.ToString(), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_canceled_probe_is_canceled_and_connects_nowhere()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        using var canceled = new CancellationTokenSource();
        await canceled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => PeerProbe.ProbeAsync(rig.Swarm.Transport, rig.Swarm.Info(0), Local, canceled.Token).WaitAsync(Bound, Ct));
        Assert.Equal(0, rig.Swarm.Servers[0].GetStatistics().ConnectionsAccepted);
    }
}
