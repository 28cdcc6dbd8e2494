using Petals.Health;
using Petals.Models;
using Petals.Testing.Time;
using static Petals.Tests.Client.Routing.RoutingSwarm;

namespace Petals.Tests.Health;

/// <summary>Pings a few servers at a time into the peer health; failures and timeouts are reported, not recorded.</summary>
public sealed class PingSchedulerTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task At_most_the_configured_number_of_pings_are_in_flight_and_that_many_are_used()
    {
        var options = new PeerHealthOptions { MaxConcurrentPings = 3 };
        var tracker = new PeerHealthPolicy(options);
        var inFlight = 0;
        var most = 0;
        var three = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var scheduler = new PingScheduler(
            tracker,
            async (server, token) =>
            {
                var now = Interlocked.Increment(ref inFlight);
                InterlockedMax(ref most, now);
                if (now == 3)
                {
                    three.TrySetResult();
                }

                // The first pings wait until three are in flight at once: a scheduler running fewer never gets past them.
                await three.Task.WaitAsync(Bound, token).ConfigureAwait(false);
                Interlocked.Decrement(ref inFlight);
                return TimeSpan.FromMilliseconds(int.Parse(server.PeerId.AsSpan(1), System.Globalization.CultureInfo.InvariantCulture));
            },
            options,
            TimeProvider.System);
        var servers = Enumerable.Range(1, 10).Select(i => Peer($"p{i}", 0, 1)).ToArray();
        var unreachable = await scheduler.PingAsync(servers, TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Empty(unreachable);
        Assert.Equal(3, most);
        for (var i = 1; i <= 10; i++)
        {
            Assert.True(tracker.GetRoundTripTimes().TryGetValue($"p{i}", out var rtt));
            Assert.Equal(TimeSpan.FromMilliseconds(i), rtt);
        }
    }

    [Fact]
    public async Task Failed_slow_and_nonsensical_pings_are_reported_and_leave_the_estimates_alone()
    {
        var options = new PeerHealthOptions { PingTimeout = TimeSpan.FromSeconds(5) };
        var time = new ManualTimeProvider();
        var tracker = new PeerHealthPolicy(options);
        tracker.ReportRoundTrip("slow", TimeSpan.FromMilliseconds(7));
        var slowStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var scheduler = new PingScheduler(
            tracker,
            async (server, token) =>
            {
                switch (server.PeerId)
                {
                    case "refusing":
                        throw new IOException("connection refused");
                    case "negative":
                        return TimeSpan.FromMilliseconds(-3);
                    case "slow":
                        slowStarted.TrySetResult();
                        await Task.Delay(Timeout.InfiniteTimeSpan, token).ConfigureAwait(false);
                        return TimeSpan.Zero;
                    default:
                        return TimeSpan.FromMilliseconds(12);
                }
            },
            options,
            time);
        var round = scheduler.PingAsync([Peer("ok", 0, 1), Peer("refusing", 0, 1), Peer("negative", 0, 1), Peer("slow", 0, 1)], TestContext.Current.CancellationToken);
        await slowStarted.Task.WaitAsync(Bound, TestContext.Current.CancellationToken);

        // The clock moves only once the fast ping is recorded: a loaded machine could otherwise pause that ping between
        // its answer and its deadline check, and the jump would time it out too.
        var deadline = DateTime.UtcNow + Bound;
        while (!tracker.GetRoundTripTimes().TryGetValue("ok", out _))
        {
            Assert.True(DateTime.UtcNow < deadline, "the fast ping was never recorded");
            await Task.Delay(5, TestContext.Current.CancellationToken);
        }

        Assert.False(round.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(5));
        var unreachable = await round.WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(["negative", "refusing", "slow"], unreachable);
        Assert.True(tracker.GetRoundTripTimes().TryGetValue("ok", out var ok));
        Assert.Equal(TimeSpan.FromMilliseconds(12), ok);
        Assert.True(tracker.GetRoundTripTimes().TryGetValue("slow", out var slow));
        Assert.Equal(TimeSpan.FromMilliseconds(7), slow);
        Assert.False(tracker.GetRoundTripTimes().TryGetValue("refusing", out _));
        Assert.False(tracker.GetRoundTripTimes().TryGetValue("negative", out _));
    }

    [Fact]
    public async Task Cancelling_the_round_surfaces_as_cancellation()
    {
        var options = new PeerHealthOptions();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var scheduler = new PingScheduler(
            new PeerHealthPolicy(options),
            async (_, token) =>
            {
                started.TrySetResult();
                await Task.Delay(Timeout.InfiniteTimeSpan, token).ConfigureAwait(false);
                return TimeSpan.Zero;
            },
            options,
            new ManualTimeProvider());
        using var cts = new CancellationTokenSource();
        var round = scheduler.PingAsync([Peer("p", 0, 1)], cts.Token);
        await started.Task.WaitAsync(Bound, TestContext.Current.CancellationToken);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => round.WaitAsync(Bound, TestContext.Current.CancellationToken));
    }

    [Fact]
    public void A_round_chooses_a_few_servers_of_each_block_unmeasured_ones_first()
    {
        var options = new PeerHealthOptions { PingsPerBlock = 2 };
        var tracker = new PeerHealthPolicy(options);
        var servers = new[]
        {
            Peer("wide", 0, 6), Peer("m1", 0, 3), Peer("m2", 0, 3), Peer("u1", 0, 3), Peer("t1", 3, 6), Peer("t2", 3, 6), Peer("t3", 3, 6),
            Peer("joining", 0, 6, state: Petals.Discovery.ServerState.Joining), Peer("outside", 6, 8),
        };
        tracker.ReportRoundTrip("wide", TimeSpan.FromMilliseconds(1));
        tracker.ReportRoundTrip("m1", TimeSpan.FromMilliseconds(1));
        tracker.ReportRoundTrip("m2", TimeSpan.FromMilliseconds(1));
        for (var seed = 0; seed < 50; seed++)
        {
            var scheduler = new PingScheduler(tracker, (_, _) => ValueTask.FromResult(TimeSpan.Zero), options, TimeProvider.System, new Random(seed));
            var chosen = scheduler.ChooseTargets(servers, new BlockRange(0, 6));
            var ids = chosen.Select(s => s.PeerId).ToArray();
            Assert.Equal(ids.Length, ids.Distinct().Count());
            Assert.DoesNotContain("joining", ids);
            Assert.DoesNotContain("outside", ids);
            Assert.Contains("u1", ids); // the only unmeasured server of blocks 0:3 comes before the measured ones
            for (var b = 0; b < 6; b++)
            {
                // Each block has exactly two chosen servers: enough, and no more than needed.
                Assert.Equal(2, chosen.Count(s => s.Span.Contains(b)));
            }

            // The same seed gives the same choice whatever the order of the servers.
            var again = new PingScheduler(tracker, (_, _) => ValueTask.FromResult(TimeSpan.Zero), options, TimeProvider.System, new Random(seed));
            Assert.Equal(ids, again.ChooseTargets([.. servers.Reverse()], new BlockRange(0, 6)).Select(s => s.PeerId));
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}
