namespace Petals.Discovery;

/// <summary>
/// The fire-and-forget work of one DHT component (served streams, eviction pings): remembers each task until it ends,
/// so that stopping the component can wait for all of it, including tasks started while it waits. Thread-safe.
/// </summary>
internal sealed class BackgroundTasks
{
    private readonly Lock _gate = new();
    private readonly HashSet<Task> _running = [];

    /// <summary>How many tracked tasks have not ended yet.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _running.Count;
            }
        }
    }

    /// <summary>Tracks <paramref name="task"/> until it ends (its outcome is observed by <see cref="WhenAllAsync"/>).</summary>
    /// <param name="task">The started task.</param>
    public void Track(Task task)
    {
        ArgumentNullException.ThrowIfNull(task);
        lock (_gate)
        {
            _running.Add(task);
        }

        _ = task.ContinueWith(
            static (t, state) =>
            {
                var owner = (BackgroundTasks)state!;
                lock (owner._gate)
                {
                    owner._running.Remove(t);
                }
            },
            this,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    /// <summary>
    /// Waits until no tracked task is left. A task tracked while waiting (work that started more work) is waited for
    /// too. Rethrows the first fault of a task that was still tracked when the wait began.
    /// </summary>
    /// <returns>A task that completes when every tracked task has ended.</returns>
    public async Task WhenAllAsync()
    {
        while (true)
        {
            Task[] pending;
            lock (_gate)
            {
                pending = [.. _running];
            }

            if (pending.Length == 0)
            {
                return;
            }

            await Task.WhenAll(pending).ConfigureAwait(false);
        }
    }
}
