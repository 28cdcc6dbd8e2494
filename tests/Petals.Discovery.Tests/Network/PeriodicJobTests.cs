using Petals.Testing.Time;

namespace Petals.Discovery.Tests.Network;

/// <summary>The one mechanism behind the node's refresh, republication and sweep: runs on the injected clock, never overlaps, stops on disposal.</summary>
public sealed class PeriodicJobTests
{
    private static readonly TimeSpan Period = TimeSpan.FromMinutes(20);
    private static readonly TimeSpan Bound = DhtTestNetwork.Bound;

    [Fact]
    public async Task Runs_once_per_period_of_the_injected_clock_and_not_before()
    {
        var time = new ManualTimeProvider(DhtTestKit.Start);
        var calls = 0;
        var job = new PeriodicJob(time, Period, _ =>
        {
            calls++;
            return Task.CompletedTask;
        });
        await using (job)
        {
            time.Advance(Period - TimeSpan.FromTicks(1));
            Assert.Equal(0, calls);
            time.Advance(TimeSpan.FromTicks(1));
            Assert.Equal(1, calls);
            time.Advance(3 * Period);
            Assert.Equal(4, calls);
            Assert.Equal(4, job.Runs);
            Assert.Equal(0, job.SkippedTicks);
            Assert.False(job.IsRunning);
        }
    }

    [Fact]
    public async Task A_tick_while_a_run_is_still_going_is_skipped_not_queued()
    {
        var time = new ManualTimeProvider(DhtTestKit.Start);
        var gate = new TaskCompletionSource();
        var current = 0;
        var most = 0;
        var job = new PeriodicJob(time, Period, async ct =>
        {
            most = Math.Max(most, Interlocked.Increment(ref current));
            try
            {
                await gate.Task.WaitAsync(ct);
            }
            finally
            {
                Interlocked.Decrement(ref current);
            }
        });
        await using (job)
        {
            time.Advance(Period);
            Assert.True(job.IsRunning);
            time.Advance(3 * Period);
            Assert.Equal(1, job.Runs);
            Assert.Equal(3, job.SkippedTicks);

            gate.SetResult();
            Assert.True(SpinWait.SpinUntil(() => !job.IsRunning, Bound), "the run never ended");

            // The skipped ticks were not queued: the next run comes with the next tick only.
            Assert.Equal(1, job.Runs);
            time.Advance(Period);
            Assert.True(SpinWait.SpinUntil(() => !job.IsRunning, Bound), "the second run never ended");
            Assert.Equal(2, job.Runs);
            Assert.Equal(1, most);
            Assert.Null(job.LastFault);
        }
    }

    [Fact]
    public async Task Disposal_cancels_the_running_run_waits_for_it_and_stops_the_timer()
    {
        var time = new ManualTimeProvider(DhtTestKit.Start);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ended = false;
        var job = new PeriodicJob(time, Period, async ct =>
        {
            try
            {
                started.SetResult();
                await Task.Delay(Timeout.InfiniteTimeSpan, ct);
            }
            finally
            {
                Volatile.Write(ref ended, true);
            }
        });
        Assert.Equal(1, time.PendingTimerCount);
        time.Advance(Period);
        await started.Task.WaitAsync(Bound, TestContext.Current.CancellationToken);

        await job.DisposeAsync().AsTask().WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.True(Volatile.Read(ref ended), "disposal returned before the running run ended");
        Assert.False(job.IsRunning);
        Assert.Null(job.LastFault);

        // No timer is left, and time passing starts nothing; disposing again is a no-op.
        Assert.Equal(0, time.PendingTimerCount);
        time.Advance(10 * Period);
        Assert.Equal(1, job.Runs);
        await job.DisposeAsync().AsTask().WaitAsync(Bound, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_failing_run_is_kept_as_the_last_fault_and_the_next_tick_runs_again()
    {
        var time = new ManualTimeProvider(DhtTestKit.Start);
        var calls = 0;
        var job = new PeriodicJob(time, Period, _ => ++calls switch
        {
            1 => throw new InvalidOperationException("thrown before the first await"),
            2 => Task.FromException(new TimeoutException("a faulted task")),
            _ => Task.CompletedTask,
        });
        await using (job)
        {
            time.Advance(Period);
            Assert.Equal("thrown before the first await", Assert.IsType<InvalidOperationException>(job.LastFault).Message);
            time.Advance(Period);
            Assert.Equal("a faulted task", Assert.IsType<TimeoutException>(job.LastFault).Message);
            time.Advance(Period);
            Assert.Equal(3, calls);
            Assert.Equal(3, job.Runs);
        }
    }

    [Fact]
    public void A_period_that_is_not_positive_is_refused()
    {
        var time = new ManualTimeProvider(DhtTestKit.Start);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PeriodicJob(time, TimeSpan.Zero, _ => Task.CompletedTask));
        Assert.Equal(0, time.PendingTimerCount);
    }
}
