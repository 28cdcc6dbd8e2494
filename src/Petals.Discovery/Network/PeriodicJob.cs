namespace Petals.Discovery;

/// <summary>
/// Runs one asynchronous job every period on the injected <see cref="TimeProvider"/> (the node's refresh,
/// republication and storage sweep). Runs never overlap: a tick that falls due while the previous run is still going
/// is skipped, not queued, so a slow run cannot pile up work. A run that fails does not stop later ones (its exception
/// is kept in <see cref="LastFault"/>). <see cref="DisposeAsync"/> stops the timer, cancels the running run and waits
/// for it to end. Thread-safe.
/// </summary>
internal sealed class PeriodicJob : IAsyncDisposable
{
    private readonly Func<CancellationToken, Task> _job;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly ITimer _timer;
    private TaskCompletionSource? _idle;
    private Exception? _lastFault;
    private bool _busy;
    private bool _stopped;
    private int _runs;
    private int _skipped;

    /// <summary>Starts the timer: the first run falls due one <paramref name="period"/> from now.</summary>
    /// <param name="timeProvider">The clock whose timer triggers the runs.</param>
    /// <param name="period">The time between runs; positive.</param>
    /// <param name="job">The work of one run; its token is cancelled when the job is disposed.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="period"/> is not positive.</exception>
    public PeriodicJob(TimeProvider timeProvider, TimeSpan period, Func<CancellationToken, Task> job)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(job);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(period, TimeSpan.Zero);
        _job = job;
        _timer = timeProvider.CreateTimer(static state => ((PeriodicJob)state!).OnTick(), this, period, period);
    }

    /// <summary>How many runs have started.</summary>
    public int Runs => Volatile.Read(ref _runs);

    /// <summary>Whether a run is going now.</summary>
    public bool IsRunning
    {
        get
        {
            lock (_gate)
            {
                return _busy;
            }
        }
    }

    /// <summary>How many ticks were skipped because a run was still going (or the job was stopping).</summary>
    public int SkippedTicks => Volatile.Read(ref _skipped);

    /// <summary>The exception of the latest run that failed (other than by being cancelled on disposal), or null.</summary>
    public Exception? LastFault => Volatile.Read(ref _lastFault);

    /// <summary>Stops the timer, cancels the running run (if any) and waits for it to end. Idempotent.</summary>
    /// <returns>A task that completes once no run is going and none will start.</returns>
    public async ValueTask DisposeAsync()
    {
        Task? running = null;
        lock (_gate)
        {
            if (_stopped)
            {
                return;
            }

            _stopped = true;
            if (_busy)
            {
                _idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                running = _idle.Task;
            }
        }

        await _timer.DisposeAsync().ConfigureAwait(false);
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (running is not null)
        {
            await running.ConfigureAwait(false);
        }

        // No run is going and none can start (_stopped is set under the gate before a run would start).
        _stopping.Dispose();
    }

    private void OnTick()
    {
        lock (_gate)
        {
            if (_stopped || _busy)
            {
                _skipped++;
                return;
            }

            _busy = true;
            _runs++;
        }

        // Started on the timer's thread, as a timer callback would run it: with a manual clock the run has begun by
        // the time Advance returns. Its outcome is handled inside RunAsync, so the task is not awaited here.
        _ = RunAsync();
    }

    private async Task RunAsync()
    {
        try
        {
            await _job(_stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            // Stopped mid-run: nothing went wrong.
        }
        catch (Exception e)
        {
            // A periodic job must outlive one bad run (the next tick tries again); keep the fault for inspection.
            Volatile.Write(ref _lastFault, e);
        }
        finally
        {
            TaskCompletionSource? idle;
            lock (_gate)
            {
                _busy = false;
                idle = _idle;
            }

            idle?.TrySetResult();
        }
    }
}
