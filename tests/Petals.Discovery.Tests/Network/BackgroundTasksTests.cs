namespace Petals.Discovery.Tests.Network;

/// <summary>The tracker a stopping node waits on: it forgets ended tasks and waits for work started while it waits.</summary>
public sealed class BackgroundTasksTests
{
    private static readonly TimeSpan Bound = DhtTestNetwork.Bound;

    [Fact]
    public async Task Waiting_includes_tasks_tracked_while_waiting_and_ended_tasks_are_forgotten()
    {
        var ct = TestContext.Current.CancellationToken;
        var tracker = new BackgroundTasks();
        await tracker.WhenAllAsync().WaitAsync(Bound, ct);

        var first = new TaskCompletionSource();
        var second = new TaskCompletionSource();
        async Task StartsMoreWorkAsync()
        {
            await first.Task;
            tracker.Track(second.Task);
        }

        var starter = StartsMoreWorkAsync();
        tracker.Track(starter);
        Assert.Equal(1, tracker.Count);
        var waiting = tracker.WhenAllAsync();
        first.SetResult();

        // The starter has ended (and is forgotten); the task it tracked is what remains.
        Assert.True(SpinWait.SpinUntil(() => starter.IsCompleted && tracker.Count == 1, Bound), "the starter never ended");
        Assert.False(waiting.IsCompleted, "the wait ended while a task tracked during it was still running");

        second.SetResult();
        await waiting.WaitAsync(Bound, ct);
        Assert.Equal(0, tracker.Count);
    }
}
