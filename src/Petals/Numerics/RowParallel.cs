using System.Runtime.ExceptionServices;

namespace Petals.Numerics;

/// <summary>Work split into row ranges; <see cref="Execute"/> runs one range.</summary>
internal interface IRowWork
{
    /// <summary>Processes rows <c>[start, end)</c>.</summary>
    /// <param name="part">The part index, in <c>[0, parts)</c>, e.g. to pick a per-part scratch buffer.</param>
    /// <param name="start">The first row.</param>
    /// <param name="end">The row past the last.</param>
    void Execute(int part, int start, int end);
}

/// <summary>
/// Runs an <see cref="IRowWork"/> over all cores on the .NET thread pool without allocating per call (unlike
/// <c>Parallel.For</c>), so the client can use it once per generated token. The caller works too and claims any
/// part the pool has not started, so a busy pool slows a run down but never stalls it.
/// </summary>
/// <remarks>One run at a time per instance: <see cref="TryRun"/> returns <see langword="false"/> when another run is in
/// progress, and the caller then does the work serially (concurrent generations are parallel by themselves).</remarks>
internal sealed class RowParallel : IThreadPoolWorkItem, IDisposable
{
    private readonly ManualResetEventSlim _done = new(false);
    private readonly Lock _gate = new();
    private IRowWork? _work;
    private int _rows;
    private int _next;
    private int _completed;
    private Exception? _error;

    public RowParallel(int parts)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(parts, 1);
        Parts = parts;
        _next = int.MaxValue;
    }

    /// <summary>The instance shared by the process, with one part per core.</summary>
    public static RowParallel Shared { get; } = new(Environment.ProcessorCount);

    /// <summary>The number of parts each run is split into.</summary>
    public int Parts { get; }

    /// <summary>Runs <paramref name="work"/> over <paramref name="rows"/> rows split into <see cref="Parts"/> ranges and waits for all of them.</summary>
    /// <returns><see langword="false"/> (nothing done) when another run holds this instance.</returns>
    public bool TryRun(IRowWork work, int rows)
    {
        if (Parts == 1 || !_gate.TryEnter())
        {
            return false;
        }

        try
        {
            _work = work;
            _rows = rows;
            _error = null;
            _done.Reset();
            Volatile.Write(ref _completed, 0);
            Volatile.Write(ref _next, 0); // publishes the run: parts can be claimed from here on
            for (var i = 1; i < Parts; i++)
            {
                ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
            }

            ClaimParts();
            _done.Wait();
            if (_error is { } error)
            {
                ExceptionDispatchInfo.Throw(error);
            }

            return true;
        }
        finally
        {
            Volatile.Write(ref _next, int.MaxValue);
            _work = null;
            _gate.Exit();
        }
    }

    /// <inheritdoc />
    public void Dispose() => _done.Dispose();

    /// <inheritdoc />
    void IThreadPoolWorkItem.Execute() => ClaimParts();

    private void ClaimParts()
    {
        int part;
        while ((part = Interlocked.Increment(ref _next) - 1) < Parts && part >= 0)
        {
            try
            {
                _work!.Execute(part, (int)((long)_rows * part / Parts), (int)((long)_rows * (part + 1) / Parts));
            }
            catch (Exception ex)
            {
                Interlocked.CompareExchange(ref _error, ex, null);
            }
            finally
            {
                if (Interlocked.Increment(ref _completed) == Parts)
                {
                    _done.Set();
                }
            }
        }
    }
}
