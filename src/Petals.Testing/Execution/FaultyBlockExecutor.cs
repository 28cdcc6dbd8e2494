using Petals.Execution;
using Petals.Models;

namespace Petals.Testing.Execution;

/// <summary>
/// An executor decorator that injects failures: it runs the inner executor, but makes chosen passes throw, so a real
/// block server answers them with an error frame (<c>internal</c>, "The step failed: fault injected: …"), and it can
/// slow every pass down (a slow but live server). Inference steps (passes with a cache: prefill, decode, replay) and
/// stateless forwards are counted separately from 1; a pass chosen to fail throws before touching the hidden states
/// or the cache. Compose it with <c>Use(inner =&gt; new FaultyBlockExecutor(inner))</c> on a server builder.
/// </summary>
/// <remarks>Thread-safe.</remarks>
/// <param name="inner">The executor that runs the passes that do not fail.</param>
public sealed class FaultyBlockExecutor(IBlockExecutor inner) : DelegatingBlockExecutor(inner)
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

    /// <summary>How long every pass sleeps before it runs (a slow but live server); zero by default.</summary>
    public TimeSpan PassDelay { get; set; }

    /// <summary>Makes the inference step number <paramref name="number"/> (counted from 1 over all sessions) throw.</summary>
    /// <param name="number">The step's number, from 1.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="number"/> is below 1.</exception>
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
    /// <param name="number">The forward's number, from 1.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="number"/> is below 1.</exception>
    public void FailForward(long number)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(number, 1);
        lock (_lock)
        {
            _failForwards.Add(number);
        }
    }

    /// <inheritdoc />
    public override void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) => Forward(hidden, batchSize, tokenCount, cache, Blocks);

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The pass was chosen to fail ("fault injected: …").</exception>
    public override void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks)
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

        base.Forward(hidden, batchSize, tokenCount, cache, blocks);
    }
}
