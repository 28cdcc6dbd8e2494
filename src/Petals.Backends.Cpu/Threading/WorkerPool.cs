using System.Runtime.ExceptionServices;

namespace Petals.Backends.Cpu.Threading;

/// <summary>
/// A fixed set of worker threads that run the parts of one <see cref="IParallelWork"/> at a time, the calling
/// thread taking part 0. Dispatch allocates nothing, unlike <c>Parallel.For</c>, so it can be used per token; idle
/// workers spin for a few tens of microseconds (the gap between two products of one forward pass) before sleeping,
/// so back-to-back dispatches do not pay a kernel wake-up each.
/// </summary>
/// <remarks>One <see cref="Run"/> at a time: callers serialize (the executor holds its lock around a forward pass).</remarks>
internal sealed class WorkerPool : IDisposable
{
    private const int SpinIterations = 100;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake;
    private readonly SemaphoreSlim _done = new(0);
    private readonly Exception?[] _errors;
    private IParallelWork? _work;
    private int _remaining;
    private volatile bool _disposed;

    public WorkerPool(int threadCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threadCount, 1);
        PartCount = threadCount;
        _threads = new Thread[threadCount - 1];
        _wake = new SemaphoreSlim[threadCount - 1];
        _errors = new Exception?[threadCount];
        for (var i = 0; i < _threads.Length; i++)
        {
            _wake[i] = new SemaphoreSlim(0);
            var index = i;
            _threads[i] = new Thread(() => WorkerLoop(index))
            {
                IsBackground = true,
                Name = "petals-cpu-worker-" + (i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture),
            };
            _threads[i].Start();
        }
    }

    /// <summary>The number of parts every work is split into (the thread count).</summary>
    public int PartCount { get; }

    /// <summary>Runs all parts of <paramref name="work"/> and returns when every part is done; rethrows the first failure.</summary>
    public void Run(IParallelWork work)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (PartCount == 1)
        {
            work.Execute(0, 1);
            return;
        }

        _work = work;
        Array.Clear(_errors);
        Volatile.Write(ref _remaining, PartCount - 1);
        foreach (var wake in _wake)
        {
            // One release per worker per run, one wait per worker per run: balanced by construction.
            wake.Release();
        }

        try
        {
            work.Execute(0, PartCount);
        }
        catch (Exception ex)
        {
            _errors[0] = ex;
        }

        // The last worker releases _done exactly once per run; spin briefly first, then consume that release
        // (SemaphoreSlim's synchronous wait allocates nothing, unlike a lazily created event).
        var spins = 0;
        while (Volatile.Read(ref _remaining) != 0 && spins++ < SpinIterations)
        {
            Thread.SpinWait(20);
        }

        _done.Wait();

        _work = null;
        foreach (var e in _errors)
        {
            if (e is not null)
            {
                ExceptionDispatchInfo.Capture(e).Throw();
            }
        }
    }

    private void WorkerLoop(int index)
    {
        var wake = _wake[index];
        while (true)
        {
            // Spin briefly while the next run is likely to come soon (the products of one forward pass follow each
            // other within microseconds), then block.
            var spins = 0;
            while (wake.CurrentCount == 0 && spins++ < SpinIterations)
            {
                Thread.SpinWait(20);
            }

            wake.Wait();
            if (_disposed)
            {
                return;
            }

            try
            {
                _work!.Execute(index + 1, PartCount);
            }
            catch (Exception ex)
            {
                _errors[index + 1] = ex;
            }

            if (Interlocked.Decrement(ref _remaining) == 0)
            {
                _done.Release();
            }
        }
    }

    /// <summary>Stops the workers.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var wake in _wake)
        {
            wake.Release();
        }
        foreach (var t in _threads)
        {
            t.Join();
        }

        foreach (var s in _wake)
        {
            s.Dispose();
        }

        _done.Dispose();
    }

    /// <summary>The half-open slice <c>[start, end)</c> of <paramref name="count"/> items that part <paramref name="part"/> of <paramref name="parts"/> takes.</summary>
    public static (int Start, int End) Slice(int count, int part, int parts, int align = 1)
    {
        var units = (count + align - 1) / align;
        var s = (int)((long)units * part / parts) * align;
        var e = (int)((long)units * (part + 1) / parts) * align;
        return (Math.Min(s, count), Math.Min(e, count));
    }
}
