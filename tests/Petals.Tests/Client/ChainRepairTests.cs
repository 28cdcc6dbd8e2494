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

    /// <summary>
    /// Chains are written as segments <c>"x0:2"</c> (server x, blocks 0:2); the replacements are the <paramref name="count"/>
    /// segments at <paramref name="index"/>; <paramref name="retired"/> lists the left-behind segments in the order retired.
    /// </summary>
    [Theory]
    [InlineData("a0:2 x2:4 b4:6", 1, 1, "a0:2 x2:4 b4:6", 1, "")] // neighbours on other servers
    [InlineData("x0:2 a2:4", 1, 1, "x0:2 a2:4", 1, "")] // the previous touches but is another server
    [InlineData("x0:2 x3:4 x5:6", 1, 1, "x0:2 x3:4 x5:6", 1, "")] // the same server, blocks not touching
    [InlineData("x0:6", 0, 1, "x0:6", 0, "")] // the whole chain
    [InlineData("a0:2 x2:3 x3:6", 1, 1, "a0:2 x2:6", 1, "x3:6")] // the next: resume at the joined segment
    [InlineData("x0:2 x2:4 b4:6", 0, 1, "x0:4 b4:6", 0, "x2:4")] // the next, from the first segment
    [InlineData("x0:2 x2:4 b4:6", 1, 1, "x0:4 b4:6", 0, "x0:2")] // the previous: resume at the joined segment, one earlier
    [InlineData("a0:2 x2:4 x4:6", 2, 1, "a0:2 x2:6", 1, "x2:4")] // the previous, at the last segment
    [InlineData("a0:1 x1:2 x2:4 x4:6", 2, 1, "a0:1 x1:6", 1, "x4:6 x1:2")] // both: the next first, then the previous
    [InlineData("y0:2 y2:3 x3:4 x4:6", 1, 2, "y0:3 x3:6", 0, "x4:6 y0:2")] // two replacements: the last joins the next, the first the previous
    public void A_replacement_is_joined_with_each_neighbour_on_its_server_whose_blocks_touch_its_own(string chain, int index, int count, string joined, int resume, string retired)
    {
        var segments = Parse(chain);
        var before = segments.ToArray();
        var gone = new List<Segment>();
        var at = ChainRepair.JoinNeighbors(
            segments,
            index,
            count,
            static (a, b) => a.Server == b.Server && a.Blocks.End == b.Blocks.Start,
            static (a, b) => new Segment(a.Server, new BlockRange(a.Blocks.Start, b.Blocks.End)),
            gone.Add);

        Assert.Equal((joined, resume, retired), (string.Join(' ', segments), at, string.Join(' ', gone)));
        Assert.All(gone, g => Assert.Contains(before, s => ReferenceEquals(s, g))); // the segments themselves, not copies
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

    private static List<Segment> Parse(string chain) =>
        [.. chain.Split(' ').Select(s => new Segment(s[..1], BlockRange.Parse(s[1..])))];

    /// <summary>A segment of a plain chain: a server and its blocks.</summary>
    private sealed record Segment(string Server, BlockRange Blocks)
    {
        public override string ToString() => $"{Server}{Blocks}";
    }
}
