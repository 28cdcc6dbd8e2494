using System.Diagnostics;

namespace Petals.Server;

/// <summary>The priority of a compute work item.</summary>
internal enum ComputePriority
{
    /// <summary>An inference step: latency matters, runs before any waiting forward batch.</summary>
    Inference = 0,

    /// <summary>
    /// A stateless backward pass (fine-tuning): after inference steps, before forward batches, as Petals orders them (a
    /// backward completes a training step whose forward already ran, so it frees the client's activations sooner).
    /// </summary>
    Backward = 1,

    /// <summary>A stateless forward batch: runs when no inference step or backward pass waits.</summary>
    Forward = 2,
}

/// <summary>
/// One compute lane: work items run one at a time on a dedicated thread (the executor uses every core for one
/// forward pass, and a session cache must not be used by two threads at once). Inference steps run before
/// forward batches; within a priority, items run in arrival order, so concurrent sessions advance step by step.
/// </summary>
/// <remarks>Thread-safe. A long prefill runs as one item: others wait for it, but never more than one item per session in front of them.</remarks>
internal sealed class ComputeScheduler : IDisposable
{
    private readonly Queue<WorkItem>[] _queues = [new(), new(), new()];
    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Thread _thread;
    private readonly CancellationTokenSource _stop = new();
    private long _computeTicks;
    private long _completed;
    private bool _disposed;

    public ComputeScheduler(string name = "petals-compute")
    {
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Time spent running work items.</summary>
    public TimeSpan ComputeTime => TimeSpan.FromTicks(Interlocked.Read(ref _computeTicks));

    /// <summary>The number of work items waiting to run.</summary>
    public int Queued
    {
        get
        {
            lock (_lock)
            {
                return _queues[0].Count + _queues[1].Count + _queues[2].Count;
            }
        }
    }

    /// <summary>The number of work items run.</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Queues <paramref name="work"/>; the task completes when it has run (with its exception, if it threw).</summary>
    /// <exception cref="ObjectDisposedException">When the scheduler is disposed.</exception>
    public Task RunAsync(ComputePriority priority, Action<object?> work, object? state, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        var item = new WorkItem(work, state, cancellationToken);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (cancellationToken.IsCancellationRequested)
            {
                return Task.FromCanceled(cancellationToken);
            }

            _queues[(int)priority].Enqueue(item);
        }

        _signal.Release();
        return item.Completion.Task;
    }

    private void Run()
    {
        while (true)
        {
            try
            {
                _signal.Wait(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            WorkItem? item;
            lock (_lock)
            {
                if (!_queues[0].TryDequeue(out item) && !_queues[1].TryDequeue(out item))
                {
                    _queues[2].TryDequeue(out item);
                }
            }

            if (item is null)
            {
                continue;
            }

            if (item.CancellationToken.IsCancellationRequested)
            {
                item.Completion.TrySetCanceled(item.CancellationToken);
                continue;
            }

            var start = Stopwatch.GetTimestamp();
            try
            {
                item.Work(item.State);
                item.Completion.TrySetResult();
            }
#pragma warning disable CA1031 // The exception belongs to the work item's caller; the lane keeps running.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                item.Completion.TrySetException(ex);
            }
            finally
            {
                Interlocked.Add(ref _computeTicks, Stopwatch.GetElapsedTime(start).Ticks);
                Interlocked.Increment(ref _completed);
            }
        }

        // Fail what is left so that no caller waits forever.
        lock (_lock)
        {
            foreach (var queue in _queues)
            {
                while (queue.TryDequeue(out var left))
                {
                    left.Completion.TrySetException(new ObjectDisposedException(nameof(ComputeScheduler), "The compute lane stopped before this work item ran."));
                }
            }
        }
    }

    /// <summary>Stops the lane after the item in progress; queued items fail with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _stop.Cancel();
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }

        _stop.Dispose();
        _signal.Dispose();
    }

    private sealed class WorkItem(Action<object?> work, object? state, CancellationToken cancellationToken)
    {
        public Action<object?> Work { get; } = work;

        public object? State { get; } = state;

        public CancellationToken CancellationToken { get; } = cancellationToken;

        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
