using Petals.Testing.Time;

namespace Petals.Testing.Tests.Time;

public sealed class ManualTimeProviderTests
{
    [Fact]
    public void Timers_fire_in_due_order_at_their_due_time()
    {
        var clock = new ManualTimeProvider();
        var start = clock.GetUtcNow();
        var fired = new List<(string Name, TimeSpan At)>();
        using var b = clock.CreateTimer(_ => fired.Add(("b", clock.GetUtcNow() - start)), null, TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);
        using var a = clock.CreateTimer(_ => fired.Add(("a", clock.GetUtcNow() - start)), null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        using var never = clock.CreateTimer(_ => fired.Add(("never", clock.GetUtcNow() - start)), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);

        clock.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Empty(fired);
        clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal([("a", TimeSpan.FromSeconds(1)), ("b", TimeSpan.FromSeconds(2))], fired);
        Assert.Equal(TimeSpan.FromSeconds(5.999), clock.GetUtcNow() - start);
    }

    [Fact]
    public void Periodic_timers_repeat_and_disposed_timers_stop()
    {
        var clock = new ManualTimeProvider();
        var count = 0;
        var timer = clock.CreateTimer(_ => count++, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        clock.Advance(TimeSpan.FromSeconds(3.5));
        Assert.Equal(3, count);
        timer.Dispose();
        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(3, count);
        Assert.Equal(0, clock.PendingTimerCount);
    }

    [Fact]
    public async Task Task_delay_on_the_manual_clock_completes_only_when_advanced()
    {
        var clock = new ManualTimeProvider();
        var delay = Task.Delay(TimeSpan.FromMinutes(1), clock, TestContext.Current.CancellationToken);
        await Task.Delay(20, TestContext.Current.CancellationToken);
        Assert.False(delay.IsCompleted);
        clock.Advance(TimeSpan.FromMinutes(1));
        await delay.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(TimeSpan.FromMinutes(1), clock.GetElapsedTime(0, clock.GetTimestamp()) - clock.GetElapsedTime(0, new DateTimeOffset(2000, 1, 1, 0, 0, 0, TimeSpan.Zero).UtcTicks));
    }
}
