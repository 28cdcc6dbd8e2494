using Petals.Execution;
using Petals.Models;

namespace Petals.Testing.Execution;

/// <summary>
/// An executor decorator that lies: on the passes it chooses it answers something other than its blocks' outputs —
/// the input unchanged (<see cref="LieKind.Echo"/>, a server that skips its blocks) or the true outputs plus noise
/// (<see cref="LieKind.Noise"/>). Its cache is always built honestly, so a server that lies on a fraction of steps
/// stays consistent on the others. By default it lies on every inference step (passes with a cache) and answers
/// stateless forwards honestly — the server a spot check must catch in the act, since a verifier's recomputation
/// is a stateless forward. Compose it with <c>Use(inner =&gt; new LyingBlockExecutor(inner))</c> on a server builder.
/// </summary>
/// <remarks>Thread-safe; the draws of which passes to lie on come from a seeded <see cref="Random"/> under a lock.</remarks>
public sealed class LyingBlockExecutor : DelegatingBlockExecutor
{
    private readonly Lock _lock = new();
    private readonly Random _random;
    private long _steps;
    private long _forwards;
    private long _lies;

    /// <summary>Wraps <paramref name="inner"/>.</summary>
    /// <param name="inner">The honest executor.</param>
    /// <param name="seed">The seed of the draws (which passes to lie on, the noise).</param>
    /// <exception cref="ArgumentNullException"><paramref name="inner"/> is null.</exception>
    public LyingBlockExecutor(IBlockExecutor inner, int seed = 12)
        : base(inner)
    {
        _random = new Random(seed);
    }

    /// <summary>How it lies. Default <see cref="LieKind.Echo"/>.</summary>
    public LieKind Kind { get; set; } = LieKind.Echo;

    /// <summary>The probability, in [0, 1], that a pass it may lie on is a lie. Default 1 (every one).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is not in [0, 1].</exception>
    public double Fraction
    {
        get;
        set => field = value is >= 0 and <= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "Fraction must be in [0, 1].");
    } = 1;

    /// <summary>The noise of <see cref="LieKind.Noise"/>, relative to each row's RMS, in (0, 100]. Default 0.1.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is not in (0, 100].</exception>
    public double NoiseScale
    {
        get;
        set => field = value is > 0 and <= 100 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "NoiseScale must be in (0, 100].");
    } = 0.1;

    /// <summary>Whether inference steps (passes with a cache) may be lies. Default true.</summary>
    public bool LieOnSteps { get; set; } = true;

    /// <summary>Whether stateless forwards (what verifiers run) may be lies too. Default false.</summary>
    public bool LieOnForwards { get; set; }

    /// <summary>Whether it lies at all; turn it off to make the server honest from the next pass on. Default true.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The inference steps run so far.</summary>
    public long Steps => Interlocked.Read(ref _steps);

    /// <summary>The stateless forwards run so far.</summary>
    public long Forwards => Interlocked.Read(ref _forwards);

    /// <summary>The passes answered with a lie so far.</summary>
    public long Lies => Interlocked.Read(ref _lies);

    /// <inheritdoc />
    public override void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) => Forward(hidden, batchSize, tokenCount, cache, Blocks);

    /// <inheritdoc />
    public override void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks)
    {
        var stateless = cache is null;
        Interlocked.Increment(ref stateless ? ref _forwards : ref _steps);
        bool lie;
        lock (_lock)
        {
            lie = Enabled && (stateless ? LieOnForwards : LieOnSteps) && (Fraction >= 1 || _random.NextDouble() < Fraction);
        }

        if (!lie)
        {
            base.Forward(hidden, batchSize, tokenCount, cache, blocks);
            return;
        }

        Interlocked.Increment(ref _lies);
        if (Kind == LieKind.Echo)
        {
            // The cache still advances honestly (the lie is in the answer only), so later honest steps stay consistent.
            var input = hidden.ToArray();
            base.Forward(hidden, batchSize, tokenCount, cache, blocks);
            input.CopyTo(hidden);
            return;
        }

        base.Forward(hidden, batchSize, tokenCount, cache, blocks);
        AddNoise(hidden, Config.HiddenSize);
    }

    private void AddNoise(Span<float> hidden, int width)
    {
        lock (_lock)
        {
            for (var row = 0; row + width <= hidden.Length; row += width)
            {
                var values = hidden.Slice(row, width);
                var squares = 0.0;
                foreach (var v in values)
                {
                    squares += (double)v * v;
                }

                var scale = NoiseScale * Math.Sqrt(squares / width);
                for (var k = 0; k < width; k++)
                {
                    // Box-Muller: one standard normal per value.
                    var u = 1 - _random.NextDouble();
                    var normal = Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * _random.NextDouble());
                    values[k] += (float)(scale * normal);
                }
            }
        }
    }
}
