using System.Diagnostics;
using Petals.Execution;

namespace Petals.Benchmarks;

/// <summary>Times repeated forward steps of one block through <see cref="IBlockExecutor"/> and an <see cref="IKvCache"/>.</summary>
internal static class BlockRunner
{
    /// <summary>
    /// Runs the cases in an order that shares work: the cache is filled once, up to the largest decode position, by a
    /// prefill of random hidden states (not timed); decode cases then run from the largest position down, truncating
    /// the cache to each position; prefill cases run last from an emptied cache. Results come back in the given order.
    /// </summary>
    public static BlockResult[] Run(IBlockExecutor executor, BlockOptions o, IReadOnlyList<BlockCase> cases)
    {
        var c = executor.Config;
        var maxLength = cases.Max(k => k.Position + k.Tokens);
        using var cache = executor.CreateCache(1, maxLength);
        var fillTo = cases.Where(k => k.Decode).Select(k => k.Position).DefaultIfEmpty(0).Max();
        var fillMs = 0.0;
        if (fillTo > 0)
        {
            var history = new float[(long)fillTo * c.HiddenSize];
            InMemoryBlockWeights.FillUniform(history, o.Seed + 1, 0f, 1.7f);
            var start = Stopwatch.GetTimestamp();
            executor.Forward(history, 1, fillTo, cache);
            fillMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        var order = Enumerable.Range(0, cases.Count)
            .OrderBy(i => cases[i].Decode ? 0 : cases[i].Backward ? 2 : 1)
            .ThenByDescending(i => cases[i].Position)
            .ToArray();
        var results = new BlockResult[cases.Count];
        foreach (var i in order)
        {
            results[i] = RunCase(executor, cache, o, cases[i]) with { CacheFillMs = fillMs };
        }

        return results;
    }

    private static BlockResult RunCase(IBlockExecutor executor, IKvCache cache, BlockOptions o, BlockCase k)
    {
        if (k.Backward)
        {
            return RunBackward(executor, o, k);
        }

        var c = executor.Config;
        cache.Truncate(k.Position);
        var input = new float[k.Tokens * c.HiddenSize];
        InMemoryBlockWeights.FillUniform(input, o.Seed + 2, 0f, 1.7f);
        var hidden = new float[input.Length];
        var times = new double[o.Iterations];
        long allocated = 0;
        for (var i = 0; i < o.Warmup + o.Iterations; i++)
        {
            cache.Truncate(k.Position); // the position stays fixed from one iteration to the next
            input.CopyTo(hidden, 0);
            var before = GC.GetTotalAllocatedBytes(precise: true);
            var start = Stopwatch.GetTimestamp();
            executor.Forward(hidden, 1, k.Tokens, cache);
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
                    throw new InvalidOperationException($"{k}: step {i} produced a non-finite output.");
                }
            }
        }

        return Summarize(executor, o, k, times, allocated);
    }

    /// <summary>Times the backward pass of a stateless forward over <c>k.Tokens</c> positions of one sequence (the same input and output gradient each time).</summary>
    private static BlockResult RunBackward(IBlockExecutor executor, BlockOptions o, BlockCase k)
    {
        var c = executor.Config;
        var input = new float[k.Tokens * c.HiddenSize];
        InMemoryBlockWeights.FillUniform(input, o.Seed + 2, 0f, 1.7f);
        var gradOut = new float[input.Length];
        InMemoryBlockWeights.FillUniform(gradOut, o.Seed + 3, 0f, 1f);
        var grad = new float[input.Length];
        var times = new double[o.Iterations];
        long allocated = 0;
        for (var i = 0; i < o.Warmup + o.Iterations; i++)
        {
            gradOut.CopyTo(grad, 0);
            var before = GC.GetTotalAllocatedBytes(precise: true);
            var start = Stopwatch.GetTimestamp();
            executor.Backward(input, grad, 1, k.Tokens, executor.Blocks);
            var elapsed = Stopwatch.GetElapsedTime(start);
            var after = GC.GetTotalAllocatedBytes(precise: true);
            if (i >= o.Warmup)
            {
                times[i - o.Warmup] = elapsed.TotalMilliseconds;
                allocated += after - before;
            }

            foreach (var v in grad)
            {
                if (!float.IsFinite(v))
                {
                    throw new InvalidOperationException($"{k}: step {i} produced a non-finite gradient.");
                }
            }
        }

        return Summarize(executor, o, k, times, allocated);
    }

    private static BlockResult Summarize(IBlockExecutor executor, BlockOptions o, BlockCase k, double[] times, long allocated)
    {
        Array.Sort(times);
        var n = times.Length;
        var median = n % 2 == 1 ? times[n / 2] : 0.5 * (times[(n / 2) - 1] + times[n / 2]);
        var metrics = BlockMetrics.For(executor.Config, o.DType == "f32" ? 4 : 2, o.KvBytes, k.Decode, k.Position, k.Tokens, k.Backward);
        return new BlockResult(k, median, times[0], times, metrics, allocated / o.Iterations, 0);
    }
}

/// <summary>The timings of one case.</summary>
internal sealed record BlockResult(BlockCase Case, double MedianMs, double MinMs, double[] TimesMs, BlockMetrics Metrics, long AllocatedBytesPerStep, double CacheFillMs);
