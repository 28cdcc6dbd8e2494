using Petals.Execution;
using Petals.Models;

namespace Petals.Tests.Client.Faults;

/// <summary>
/// Runs the real executor, but makes chosen passes throw, so the real <see cref="Server.BlockServer"/> answers them with
/// an error frame (<c>internal</c>, "The step failed: fault injected: ..."). Inference steps (passes with a cache: prefill,
/// decode, replay) and stateless forwards are counted separately from 1; a pass chosen to fail throws before touching
/// the hidden states or the cache. Thread-safe.
/// </summary>
internal sealed class FaultyBlockExecutor(IBlockExecutor inner) : IBlockExecutor
{
    private readonly Lock _lock = new();
    private readonly HashSet<long> _failSteps = [];
    private readonly HashSet<long> _failForwards = [];
    private long _steps;
    private long _forwards;
    private long _failures;

    /// <summary>The inference steps this executor was asked to run so far (failed ones included).</summary>
    public long Steps => Interlocked.Read(ref _steps);

    /// <summary>The stateless forwards this executor was asked to run so far (failed ones included).</summary>
    public long Forwards => Interlocked.Read(ref _forwards);

    /// <summary>The passes that threw so far.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    public ModelConfig Config => inner.Config;

    public BlockRange Blocks => inner.Blocks;

    /// <summary>Makes the inference step number <paramref name="number"/> (counted from 1 over all sessions) throw.</summary>
    public void FailStep(long number)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(number, 1);
        lock (_lock)
        {
            _failSteps.Add(number);
        }
    }

    /// <summary>Makes the next inference step throw (the one after <see cref="Steps"/> so far).</summary>
    public void FailNextStep()
    {
        lock (_lock)
        {
            _failSteps.Add(Steps + 1);
        }
    }

    /// <summary>Makes the stateless forward number <paramref name="number"/> (counted from 1) throw.</summary>
    public void FailForward(long number)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(number, 1);
        lock (_lock)
        {
            _failForwards.Add(number);
        }
    }

    public IKvCache CreateCache(int batchSize, int maxLength) => inner.CreateCache(batchSize, maxLength);

    public IKvCache CreateCache(int batchSize, int maxLength, BlockRange blocks) => inner.CreateCache(batchSize, maxLength, blocks);

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) => Forward(hidden, batchSize, tokenCount, cache, Blocks);

    /// <summary>How long every pass sleeps before it runs (a slow but live server); zero by default.</summary>
    public TimeSpan PassDelay { get; set; }

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks)
    {
        if (PassDelay > TimeSpan.Zero)
        {
            Thread.Sleep(PassDelay);
        }

        var stateless = cache is null;
        var number = stateless ? Interlocked.Increment(ref _forwards) : Interlocked.Increment(ref _steps);
        bool fail;
        lock (_lock)
        {
            fail = (stateless ? _failForwards : _failSteps).Remove(number);
        }

        if (fail)
        {
            Interlocked.Increment(ref _failures);
            throw new InvalidOperationException($"fault injected: {(stateless ? "forward" : "step")} {number} of blocks {blocks} failed");
        }

        inner.Forward(hidden, batchSize, tokenCount, cache, blocks);
    }

    public object? GetService(Type serviceType, object? serviceKey = null) => inner.GetService(serviceType, serviceKey);

    public void Dispose() => inner.Dispose();
}
