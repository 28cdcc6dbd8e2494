using System.Collections.Concurrent;
using Petals.Server;

namespace Petals.Tests.Server;

public sealed class ComputeSchedulerTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task InferenceStepsRunBeforeWaitingForwardBatchesAndEachPriorityKeepsArrivalOrder()
    {
        using var scheduler = new ComputeScheduler();
        using var gate = new ManualResetEventSlim();
        var order = new ConcurrentQueue<string>();

        // Hold the lane so that everything below queues up behind it.
        var blocker = scheduler.RunAsync(ComputePriority.Forward, _ => gate.Wait(Bound), null, TestContext.Current.CancellationToken);
        var tasks = new List<Task>
        {
            scheduler.RunAsync(ComputePriority.Forward, s => order.Enqueue((string)s!), "f1", TestContext.Current.CancellationToken),
            scheduler.RunAsync(ComputePriority.Inference, s => order.Enqueue((string)s!), "s1", TestContext.Current.CancellationToken),
            scheduler.RunAsync(ComputePriority.Forward, s => order.Enqueue((string)s!), "f2", TestContext.Current.CancellationToken),
            scheduler.RunAsync(ComputePriority.Inference, s => order.Enqueue((string)s!), "s2", TestContext.Current.CancellationToken),
        };
        gate.Set();
        await Task.WhenAll(tasks.Append(blocker)).WaitAsync(Bound, TestContext.Current.CancellationToken);

        Assert.Equal(["s1", "s2", "f1", "f2"], order);
        Assert.Equal(5, scheduler.Completed);
    }

    [Fact]
    public async Task BackwardPassesRunAfterInferenceStepsAndBeforeForwardBatches()
    {
        using var scheduler = new ComputeScheduler();
        using var gate = new ManualResetEventSlim();
        var order = new ConcurrentQueue<string>();
        var ct = TestContext.Current.CancellationToken;
        var blocker = scheduler.RunAsync(ComputePriority.Forward, _ => gate.Wait(Bound), null, ct);
        Task Queue(ComputePriority priority, string name) => scheduler.RunAsync(priority, s => order.Enqueue((string)s!), name, ct);
        var tasks = new List<Task>
        {
            Queue(ComputePriority.Forward, "f1"),
            Queue(ComputePriority.Backward, "b1"),
            Queue(ComputePriority.Inference, "s1"),
            Queue(ComputePriority.Backward, "b2"),
            Queue(ComputePriority.Forward, "f2"),
        };
        gate.Set();
        await Task.WhenAll(tasks.Append(blocker)).WaitAsync(Bound, ct);
        Assert.Equal(["s1", "b1", "b2", "f1", "f2"], order);
    }

    [Fact]
    public async Task AllWorkRunsOnOneDedicatedThreadAndAFailureReachesOnlyItsCaller()
    {
        using var scheduler = new ComputeScheduler();
        var threads = new ConcurrentBag<int>();
        var ok = Enumerable.Range(0, 20).Select(_ => scheduler.RunAsync(ComputePriority.Inference, _ => threads.Add(Environment.CurrentManagedThreadId), null, TestContext.Current.CancellationToken)).ToList();
        var failing = scheduler.RunAsync(ComputePriority.Forward, _ => throw new InvalidOperationException("boom"), null, TestContext.Current.CancellationToken);
        await Task.WhenAll(ok).WaitAsync(Bound, TestContext.Current.CancellationToken);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => failing.WaitAsync(Bound, TestContext.Current.CancellationToken));
        Assert.Equal("boom", ex.Message);
        Assert.Single(threads.Distinct());
        Assert.NotEqual(Environment.CurrentManagedThreadId, threads.First());

        // The lane still runs after a failure.
        await scheduler.RunAsync(ComputePriority.Forward, _ => { }, null, TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task DisposeFailsQueuedItemsAndRefusesNewOnes()
    {
        var scheduler = new ComputeScheduler();
        using var gate = new ManualResetEventSlim();
        using var started = new ManualResetEventSlim();
        var running = scheduler.RunAsync(ComputePriority.Forward, _ => { started.Set(); gate.Wait(Bound); }, null, TestContext.Current.CancellationToken);
        Assert.True(started.Wait(Bound, TestContext.Current.CancellationToken), "The first item did not start.");
        var queued = scheduler.RunAsync(ComputePriority.Forward, _ => { }, null, TestContext.Current.CancellationToken);
        var dispose = Task.Run(scheduler.Dispose, TestContext.Current.CancellationToken);
        await Task.Delay(50, TestContext.Current.CancellationToken);
        gate.Set();
        await dispose.WaitAsync(Bound, TestContext.Current.CancellationToken);
        await running.WaitAsync(Bound, TestContext.Current.CancellationToken);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => queued.WaitAsync(Bound, TestContext.Current.CancellationToken));
        Assert.Throws<ObjectDisposedException>(() => { _ = scheduler.RunAsync(ComputePriority.Inference, _ => { }, null, TestContext.Current.CancellationToken); });
    }
}
