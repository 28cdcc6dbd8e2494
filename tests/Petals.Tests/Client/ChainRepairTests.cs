using Petals.Client;
using Petals.Models;
using Petals.Protocol;
using Petals.Routing;
using Petals.Tests.Health;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>Chain repair: joining a replacement with its neighbours, recording failures and giving up, routing around failed servers.</summary>
public sealed class ChainRepairTests
{
    private static readonly TimeSpan Bound = ClientRig.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void A_replacement_between_segments_of_other_servers_is_left_alone()
    {
        var join = new Join([S("a", 0, 2), S("x", 2, 4), S("b", 4, 6)]);
        Assert.Equal(1, join.Run(index: 1, count: 1));
        Assert.Equal([S("a", 0, 2), S("x", 2, 4), S("b", 4, 6)], join.Chain);
        Assert.Empty(join.Retired);
    }

    [Fact]
    public void A_replacement_is_joined_with_the_next_segment_on_its_server_and_the_step_resumes_at_it()
    {
        var join = new Join([S("a", 0, 2), S("x", 2, 3), S("x", 3, 6)]);
        var next = join.Chain[2];
        Assert.Equal(1, join.Run(index: 1, count: 1));
        Assert.Equal([S("a", 0, 2), S("x", 2, 6)], join.Chain);
        Assert.Same(next, Assert.Single(join.Retired));
    }

    [Fact]
    public void A_replacement_is_joined_with_the_previous_segment_on_its_server_and_the_step_resumes_at_the_joined_one()
    {
        var join = new Join([S("x", 0, 2), S("x", 2, 4), S("b", 4, 6)]);
        var previous = join.Chain[0];
        Assert.Equal(0, join.Run(index: 1, count: 1));
        Assert.Equal([S("x", 0, 4), S("b", 4, 6)], join.Chain);
        Assert.Same(previous, Assert.Single(join.Retired));
    }

    [Fact]
    public void A_replacement_between_two_segments_on_its_server_becomes_one_segment_with_both()
    {
        var join = new Join([S("a", 0, 1), S("x", 1, 2), S("x", 2, 4), S("x", 4, 6)]);
        var (previous, next) = (join.Chain[1], join.Chain[3]);
        Assert.Equal(1, join.Run(index: 2, count: 1));
        Assert.Equal([S("a", 0, 1), S("x", 1, 6)], join.Chain);
        Assert.Equal([next, previous], join.Retired);
    }

    [Fact]
    public void Several_replacements_join_the_next_segment_with_their_last_and_the_previous_with_their_first()
    {
        // Replacements y 2:3 and x 3:4 at index 1..2: x joins the next x, y joins the previous y.
        var join = new Join([S("y", 0, 2), S("y", 2, 3), S("x", 3, 4), S("x", 4, 6)]);
        var (previous, next) = (join.Chain[0], join.Chain[3]);
        Assert.Equal(0, join.Run(index: 1, count: 2));
        Assert.Equal([S("y", 0, 3), S("x", 3, 6)], join.Chain);
        Assert.Equal([next, previous], join.Retired);
    }

    [Fact]
    public void Segments_of_the_same_server_whose_blocks_do_not_touch_are_not_joined()
    {
        // The same server before and after, but a block apart on each side: nothing to join.
        var join = new Join([S("x", 0, 2), S("x", 3, 4), S("x", 5, 6)]);
        Assert.Equal(1, join.Run(index: 1, count: 1));
        Assert.Equal([S("x", 0, 2), S("x", 3, 4), S("x", 5, 6)], join.Chain);
        Assert.Empty(join.Retired);
    }

    [Fact]
    public void A_replacement_that_is_the_whole_chain_has_no_neighbour_to_join()
    {
        var join = new Join([S("x", 0, 6)]);
        Assert.Equal(0, join.Run(index: 0, count: 1));
        Assert.Equal([S("x", 0, 6)], join.Chain);
        Assert.Empty(join.Retired);
    }

    [Fact]
    public async Task With_no_recovery_attempts_a_failure_is_reported_to_the_health_and_the_same_error_rethrown()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var health = new RecordingPeerHealth();
        var (repair, pool, link) = await RepairAsync(rig, new RemoteSequenceOptions { MaxRecoveryAttempts = 0 }, [rig.Swarm.Info(0)], health);
        var error = new ProtocolException(ProtocolErrorCode.Internal, "test: the step failed") { IsRemoteError = true };
        var attempts = new RecoveryAttempts();

        var thrown = Assert.Throws<ProtocolException>(() => repair.Failed(link, error, PeerFailureKind.ErrorAnswer, attempts));
        Assert.Same(error, thrown);
        Assert.Equal([("server-0", PeerFailureKind.ErrorAnswer)], health.Failures);
        Assert.Contains("server-0", repair.Sequence.BannedPeers);
        Assert.Equal([$"server server-0 at {rig.Swarm.Addresses[0]} (blocks 0:2) failed: test: the step failed"], attempts.Lines);
        Assert.True(pool.Pools(link.Connection)); // an error answer leaves the connection working
    }

    [Fact]
    public async Task One_failure_past_the_bound_gives_up_listing_every_failure_and_a_broken_connection_is_retired()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var health = new RecordingPeerHealth();
        var (repair, pool, link) = await RepairAsync(rig, new RemoteSequenceOptions { MaxRecoveryAttempts = 2 }, [rig.Swarm.Info(0)], health);
        var attempts = new RecoveryAttempts();

        repair.Failed(link, new ProtocolException(ProtocolErrorCode.Internal, "first") { IsRemoteError = true }, PeerFailureKind.ErrorAnswer, attempts);
        repair.Failed(link, new TimeoutException("second"), PeerFailureKind.Timeout, attempts);
        var last = new TransportException(TransportErrorKind.Aborted, "third");
        var error = Assert.Throws<RemoteChainException>(() => repair.Failed(link, last, PeerFailureKind.ConnectionLost, attempts));

        var at = $"server server-0 at {rig.Swarm.Addresses[0]} (blocks 0:2) failed";
        Assert.Equal(
            $"Gave up on model {Swarm.ModelId} after 3 server failures in one step (MaxRecoveryAttempts is 2). Failures: {at}: first; {at}: second; {at}: third.",
            error.Message);
        Assert.Same(last, error.InnerException);
        Assert.Equal([PeerFailureKind.ErrorAnswer, PeerFailureKind.Timeout, PeerFailureKind.ConnectionLost], health.Failures.Select(f => f.Kind));
        Assert.False(pool.Pools(link.Connection)); // the transport error retired it; the error answer and the timeout did not
    }

    [Fact]
    public async Task Routing_connects_around_a_dead_announced_server_and_bans_it_as_unreachable()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2)]);
        var health = new RecordingPeerHealth();
        var dead = ClientRig.Dead("dead", new BlockRange(0, 2), throughput: 1e6);
        var (repair, pool, _) = await RepairAsync(rig, new RemoteSequenceOptions(), [dead, rig.Swarm.Info(0)], health, connect: false);
        Assert.Equal(["dead"], repair.Sequence.RouteInference(1, 16).Select(s => s.Server.PeerId)); // the route tried first
        var attempts = new RecoveryAttempts();

        var links = await repair.RouteAsync(new BlockRange(0, 2), 1, 16, forward: false, attempts, Ct).WaitAsync(Bound, Ct);
        var link = Assert.Single(links);
        Assert.Equal(("server-0", new BlockRange(0, 2)), (link.PeerId, link.Blocks));
        Assert.True(pool.Pools(link.Connection));
        Assert.Equal([("dead", PeerFailureKind.Unreachable)], health.Failures);
        Assert.Contains("dead", repair.Sequence.Health.GetBannedPeers());
        Assert.Equal(["dead"], attempts.Peers);
        Assert.StartsWith($"server dead at {dead.Address} (blocks 0:2) could not be connected: ", Assert.Single(attempts.Lines), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Routing_gives_up_past_the_bound_listing_each_server_that_could_not_be_connected()
    {
        await using var rig = await ClientRig.StartAsync(2, []);
        var health = new RecordingPeerHealth();
        var (first, second) = (ClientRig.Dead("dead-a", new BlockRange(0, 2), 1e6), ClientRig.Dead("dead-b", new BlockRange(0, 2), 1e3));
        var (repair, _, _) = await RepairAsync(rig, new RemoteSequenceOptions { MaxRecoveryAttempts = 1 }, [first, second], health, connect: false);

        var error = await Assert.ThrowsAsync<RemoteChainException>(
            () => repair.RouteAsync(new BlockRange(0, 2), 1, 16, forward: false, new RecoveryAttempts(), Ct).WaitAsync(Bound, Ct));
        Assert.StartsWith(
            $"Could not route blocks 0:2 of model {Swarm.ModelId} to a server that answers (2 failures; MaxRecoveryAttempts is 1). Failures: server dead-a at {first.Address} (blocks 0:2) could not be connected: ",
            error.Message,
            StringComparison.Ordinal);
        Assert.Contains($"; server dead-b at {second.Address} (blocks 0:2) could not be connected: ", error.Message, StringComparison.Ordinal);
        Assert.Equal([("dead-a", PeerFailureKind.Unreachable), ("dead-b", PeerFailureKind.Unreachable)], health.Failures);
    }

    [Fact]
    public async Task A_blocks_only_server_is_retried_at_once_then_after_the_backoff_which_caller_cancellation_ends()
    {
        await using var rig = await ClientRig.StartAsync(2, []);
        var health = new RecordingPeerHealth();
        var options = new RemoteSequenceOptions { MaxRecoveryAttempts = 5, RecoveryBackoff = TimeSpan.FromHours(1) };
        var (repair, _, _) = await RepairAsync(rig, options, [ClientRig.Dead("dead", new BlockRange(0, 2), 1)], health, connect: false);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        var routing = repair.RouteAsync(new BlockRange(0, 2), 1, 16, forward: false, new RecoveryAttempts(), cancel.Token);
        await ClientRig.WaitUntilAsync(() => health.Failures.Count >= 2, () => $"{health.Failures.Count} failures reported");

        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => routing.WaitAsync(Bound, Ct));
        Assert.Equal(2, health.Failures.Count); // the third attempt waited for the backoff and never ran
    }

    /// <summary>A chain repair over a sequence of <paramref name="servers"/>, its pool, and (when <paramref name="connect"/>) a link to server 0 for blocks 0:2.</summary>
    private static async Task<(ChainRepair Repair, ConnectionPool Pool, ChainLink Link)> RepairAsync(
        ClientRig rig, RemoteSequenceOptions options, Petals.Discovery.ServerInfo[] servers, RecordingPeerHealth health, bool connect = true)
    {
        var sequence = await rig.StartSequenceAsync(servers, health);
        var pool = rig.CreatePool(options);
        var repair = new ChainRepair(sequence, pool, options);
        if (!connect)
        {
            return (repair, pool, default);
        }

        var connection = await pool.AcquireAsync(rig.Swarm.Info(0), new BlockRange(0, 2), Ct).WaitAsync(Bound, Ct);
        return (repair, pool, new ChainLink(connection, new BlockRange(0, 2), "server-0"));
    }

    private static Segment S(string server, int start, int end) => new(server, start, end);

    /// <summary>A segment of a plain chain: a server and its blocks.</summary>
    private sealed record Segment(string Server, int Start, int End);

    /// <summary>Runs <see cref="ChainRepair.JoinNeighbors{T}"/> over plain segments: same server and touching blocks join.</summary>
    private sealed class Join(List<Segment> chain)
    {
        public List<Segment> Chain { get; } = chain;

        public List<Segment> Retired { get; } = [];

        public int Run(int index, int count) => ChainRepair.JoinNeighbors(
            Chain,
            index,
            count,
            static (a, b) => a.Server == b.Server && a.End == b.Start,
            static (a, b) => new Segment(a.Server, a.Start, b.End),
            Retired.Add);
    }
}
