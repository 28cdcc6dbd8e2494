using System.Diagnostics;
using Petals.Execution;
using Petals.Models;

namespace Petals.Benchmarks;

/// <summary>Times repeated forward steps of one block through <see cref="IBlockExecutor"/> and an <see cref="IKvCache"/>.</summary>
internal static class BlockRunner
{
    public static BlockResult Run(IBlockExecutor executor, BlockOptions o)
    {
        var c = executor.Config;
        var decode = o.Mode == "decode";
        var tokens = decode ? 1 : o.Tokens;
        var position = decode ? o.Position : 0;
        using var cache = executor.CreateCache(1, position + tokens);

        // Fill the cache to the position with a prefill of random hidden states (not timed).
        if (position > 0)
        {
            var history = new float[(long)position * c.HiddenSize];
            InMemoryBlockWeights.FillUniform(history, o.Seed + 1, 0f, 1.7f);
            executor.Forward(history, 1, position, cache);
        }

        var input = new float[tokens * c.HiddenSize];
        InMemoryBlockWeights.FillUniform(input, o.Seed + 2, 0f, 1.7f);
        var hidden = new float[input.Length];
        var times = new double[o.Iterations];
        long allocated = 0;
        for (var i = 0; i < o.Warmup + o.Iterations; i++)
        {
            cache.Truncate(position); // the position stays fixed
            input.CopyTo(hidden, 0);
            var before = GC.GetTotalAllocatedBytes(precise: true);
            var start = Stopwatch.GetTimestamp();
            executor.Forward(hidden, 1, tokens, cache);
            var elapsed = Stopwatch.GetElapsedTime(start);
            var after = GC.GetTotalAllocatedBytes(precise: true);
            if (i >= o.Warmup)
            {
                times[i - o.Warmup] = elapsed.TotalMilliseconds;
                allocated += after - before;
            }

            foreach (var v in hidden)
            {
                if (!float.IsFinite(v))
                {
                    throw new InvalidOperationException($"Step {i} produced a non-finite output.");
                }
            }
        }

        Array.Sort(times);
        var n = times.Length;
        var median = n % 2 == 1 ? times[n / 2] : 0.5 * (times[(n / 2) - 1] + times[n / 2]);
        var metrics = BlockMetrics.For(c, o.DType == "f32" ? 4 : 2, o.KvBytes, decode, position, tokens);
        return new BlockResult(o, position, tokens, median, times[0], times, metrics, allocated / o.Iterations);
    }
}

internal sealed record BlockResult(BlockOptions Options, int Position, int Tokens, double MedianMs, double MinMs, double[] TimesMs, BlockMetrics Metrics, long AllocatedBytesPerStep);
