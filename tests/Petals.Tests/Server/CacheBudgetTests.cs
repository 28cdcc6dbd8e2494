using FsCheck;
using FsCheck.Fluent;
using Petals.Protocol;
using Petals.Server;
using Petals.Testing.Time;

namespace Petals.Tests.Server;

public sealed class CacheBudgetTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AReservationThatFitsIsGrantedAtOnceAndReturnedExactlyOnce()
    {
        var budget = new CacheBudget(100, new ManualTimeProvider());
        var a = await budget.ReserveAsync(60, Long, TestContext.Current.CancellationToken);
        Assert.Equal(40, budget.Free);
        a.Dispose();
        a.Dispose();
        Assert.Equal(100, budget.Free);
        Assert.Equal(60, budget.PeakUsed);
    }

    [Fact]
    public async Task WaitersAreServedInArrivalOrderWhenTokensReturn()
    {
        var budget = new CacheBudget(100, new ManualTimeProvider());
        var first = await budget.ReserveAsync(90, Long, TestContext.Current.CancellationToken);
        var big = budget.ReserveAsync(80, Long, TestContext.Current.CancellationToken).AsTask();
        var small = budget.ReserveAsync(5, Long, TestContext.Current.CancellationToken).AsTask();

        // 10 tokens are free, but the small request queues behind the big one (FIFO: no starvation).
        Assert.False(big.IsCompleted);
        Assert.False(small.IsCompleted);
        first.Dispose();
        var b = await big.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        var s = await small.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(15, budget.Free);
        b.Dispose();
        s.Dispose();
        Assert.Equal(100, budget.Free);
    }

    [Fact]
    public async Task AWaiterTimesOutWithCacheFullAndTheNextOneMovesUp()
    {
        var time = new ManualTimeProvider();
        var budget = new CacheBudget(100, time);
        var held = await budget.ReserveAsync(50, Long, TestContext.Current.CancellationToken);
        var tooBig = budget.ReserveAsync(60, TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken).AsTask();
        var fits = budget.ReserveAsync(50, TimeSpan.FromSeconds(50), TestContext.Current.CancellationToken).AsTask();
        Assert.False(fits.IsCompleted);

        time.Advance(TimeSpan.FromSeconds(6));
        var ex = await Assert.ThrowsAsync<ProtocolException>(() => tooBig.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        Assert.Equal(ProtocolErrorCode.CacheExhausted, ex.Code);
        Assert.Equal("cache full: the session needs 60 tokens, 50 of 100 are free", ex.Message);
        (await fits.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken)).Dispose();
        held.Dispose();
        Assert.Equal(100, budget.Free);
        Assert.Equal(0, budget.Waiting);
    }

    [Fact]
    public async Task ARequestAboveTheWholeBudgetFailsAtOnce()
    {
        var budget = new CacheBudget(100, new ManualTimeProvider());
        var ex = await Assert.ThrowsAsync<ProtocolException>(async () => await budget.ReserveAsync(101, Long, TestContext.Current.CancellationToken));
        Assert.Equal(ProtocolErrorCode.CacheExhausted, ex.Code);
        Assert.Contains("needs 101 tokens, 100 of 100 are free", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ACancelledWaiterLeavesTheQueueAndKeepsTheAccountExact()
    {
        var budget = new CacheBudget(10, new ManualTimeProvider());
        var held = await budget.ReserveAsync(10, Long, TestContext.Current.CancellationToken);
        using var cts = new CancellationTokenSource();
        var waiting = budget.ReserveAsync(5, Long, cts.Token).AsTask();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        Assert.Equal(0, budget.Waiting);
        held.Dispose();
        Assert.Equal(10, budget.Free);
    }

    [Fact]
    public void EveryInterleavingOfReserveReleaseTimeoutAndCancelKeepsExactAccounting()
    {
        // Ops: 0 = reserve (size from the value), 1 = release the oldest held, 2 = advance time past some timeouts, 3 = cancel the oldest waiter.
        Prop.ForAll(
            Gen.ListOf(Gen.Zip(Gen.Choose(0, 3), Gen.Choose(1, 40))).ToArbitrary(),
            ops =>
            {
                const long capacity = 64;
                var time = new ManualTimeProvider();
                var budget = new CacheBudget(capacity, time);
                var held = new List<CacheReservation>();
                var waiting = new List<(Task<CacheReservation> Task, CancellationTokenSource Cts, long Tokens)>();
                foreach (var (op, value) in ops)
                {
                    switch (op)
                    {
                        case 0:
                            var cts = new CancellationTokenSource();
                            try
                            {
                                waiting.Add((budget.ReserveAsync(value, TimeSpan.FromSeconds(value % 7), cts.Token).AsTask(), cts, value));
                            }
                            catch (ProtocolException)
                            {
                                cts.Dispose();
                            }

                            break;
                        case 1 when held.Count > 0:
                            held[0].Dispose();
                            held.RemoveAt(0);
                            break;
                        case 2:
                            time.Advance(TimeSpan.FromSeconds(value % 5));
                            break;
                        case 3 when waiting.Count > 0:
                            waiting[0].Cts.Cancel();
                            break;
                    }

                    Collect(waiting, held);
                    var heldTokens = held.Sum(r => r.Tokens);
                    if (budget.Free != capacity - heldTokens || budget.Free < 0)
                    {
                        return false;
                    }
                }

                // Everything returns: waiters cancelled, holdings released; the budget is whole again.
                foreach (var w in waiting)
                {
                    w.Cts.Cancel();
                }

                Collect(waiting, held);
                foreach (var r in held)
                {
                    r.Dispose();
                }

                return budget.Free == capacity && budget.Waiting == 0 && waiting.Count == 0;
            }).QuickCheckThrowOnFailure();

        static void Collect(List<(Task<CacheReservation> Task, CancellationTokenSource Cts, long Tokens)> waiting, List<CacheReservation> held)
        {
            for (var i = waiting.Count - 1; i >= 0; i--)
            {
                var (task, cts, tokens) = waiting[i];
                if (!task.IsCompleted)
                {
                    continue;
                }

                if (task.IsCompletedSuccessfully)
                {
                    Assert.Equal(tokens, task.Result.Tokens);
                    held.Add(task.Result);
                }

                else if (!task.IsCanceled && task.Exception?.InnerException is not ProtocolException { Code.Value: "cache_exhausted" })
                {
                    Assert.Fail($"A reservation failed unexpectedly: {task.Exception}");
                }

                cts.Dispose();
                waiting.RemoveAt(i);
            }
        }
    }
}
