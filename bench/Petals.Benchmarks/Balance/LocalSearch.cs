namespace Petals.Benchmarks.Balance;

/// <summary>
/// A primal heuristic for the max-min placement (it finds good placements, it proves nothing): a binary search on the
/// target T where each step tries to reach "every block covered by at least T" by minimizing the total deficit
/// sum_b max(0, T - coverage_b) with best-response moves (each server in turn to the window that removes the most
/// deficit) and random kicks when stuck. Deterministic for a given <see cref="Random"/>.
/// </summary>
internal static class LocalSearch
{
    private const int KicksPerTarget = 60;
    private const int MaxPasses = 50;

    /// <summary>A placement at least as good (in integer min coverage) as <paramref name="start"/>.</summary>
    public static int[] Improve(int blockCount, int[] lengths, long[] weights, int[] start, Random random)
    {
        var n = lengths.Length;
        var best = (int[])start.Clone();
        var bestValue = MinCoverage(blockCount, lengths, weights, best);
        long upper = 0;
        for (var i = 0; i < n; i++)
        {
            upper += weights[i] * lengths[i];
        }

        upper /= blockCount;
        var low = bestValue + 1;
        var high = upper;
        var cov = new long[blockCount];
        var gains = new long[blockCount];
        var order = new int[n];
        for (var i = 0; i < n; i++)
        {
            order[i] = i;
        }

        while (low <= high)
        {
            var target = low + ((high - low + 1) / 2);
            var attempt = (int[])best.Clone();
            if (Reach(blockCount, lengths, weights, attempt, target, random, cov, gains, order))
            {
                best = attempt;
                bestValue = MinCoverage(blockCount, lengths, weights, best);
                low = bestValue + 1;
            }
            else
            {
                high = target - 1;
            }
        }

        return best;
    }

    /// <summary>The least integer coverage over blocks of a placement.</summary>
    public static long MinCoverage(int blockCount, int[] lengths, long[] weights, int[] starts)
    {
        var cov = new long[blockCount];
        Cover(cov, lengths, weights, starts);
        var min = long.MaxValue;
        foreach (var c in cov)
        {
            min = Math.Min(min, c);
        }

        return blockCount == 0 ? 0 : min;
    }

    private static void Cover(long[] cov, int[] lengths, long[] weights, int[] starts)
    {
        Array.Clear(cov);
        for (var i = 0; i < lengths.Length; i++)
        {
            for (var b = starts[i]; b < starts[i] + lengths[i]; b++)
            {
                cov[b] += weights[i];
            }
        }
    }

    /// <summary>Tries to move <paramref name="starts"/> (in place) to a placement covering every block at least <paramref name="target"/>.</summary>
    private static bool Reach(int blockCount, int[] lengths, long[] weights, int[] starts, long target, Random random, long[] cov, long[] gains, int[] order)
    {
        Cover(cov, lengths, weights, starts);
        var n = lengths.Length;
        for (var kick = 0; kick <= KicksPerTarget; kick++)
        {
            for (var pass = 0; pass < MaxPasses; pass++)
            {
                random.Shuffle(order);
                var improved = false;
                foreach (var i in order)
                {
                    var length = lengths[i];
                    var w = weights[i];
                    for (var b = starts[i]; b < starts[i] + length; b++)
                    {
                        cov[b] -= w;
                    }

                    // gain(s) = deficit removed by covering [s, s+length): a sliding window over min(w, max(0, T - cov)).
                    for (var b = 0; b < blockCount; b++)
                    {
                        gains[b] = Math.Min(w, Math.Max(0, target - cov[b]));
                    }

                    long window = 0;
                    for (var b = 0; b < length; b++)
                    {
                        window += gains[b];
                    }

                    var current = starts[i];
                    long currentGain = 0;
                    for (var b = current; b < current + length; b++)
                    {
                        currentGain += gains[b];
                    }

                    var bestStart = current;
                    var bestGain = currentGain;
                    for (var s = 0; s + length <= blockCount; s++)
                    {
                        if (s > 0)
                        {
                            window += gains[s + length - 1] - gains[s - 1];
                        }

                        if (window > bestGain)
                        {
                            (bestGain, bestStart) = (window, s);
                        }
                    }

                    if (bestStart != current)
                    {
                        improved = true;
                        starts[i] = bestStart;
                    }

                    for (var b = starts[i]; b < starts[i] + length; b++)
                    {
                        cov[b] += w;
                    }
                }

                if (Deficit(cov, target) == 0)
                {
                    return true;
                }

                if (!improved)
                {
                    break;
                }
            }

            // Stuck: move a few random servers to random windows.
            var kicks = 1 + random.Next(Math.Max(1, n / 10));
            for (var k = 0; k < kicks; k++)
            {
                var i = random.Next(n);
                for (var b = starts[i]; b < starts[i] + lengths[i]; b++)
                {
                    cov[b] -= weights[i];
                }

                starts[i] = random.Next(blockCount - lengths[i] + 1);
                for (var b = starts[i]; b < starts[i] + lengths[i]; b++)
                {
                    cov[b] += weights[i];
                }
            }
        }

        return false;
    }

    private static long Deficit(long[] cov, long target)
    {
        long deficit = 0;
        foreach (var c in cov)
        {
            deficit += Math.Max(0, target - c);
        }

        return deficit;
    }
}
