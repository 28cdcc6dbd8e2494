using System.Globalization;
using Google.OrTools.Sat;

namespace Petals.Benchmarks.Balance;

/// <summary>The best placement found for a set of servers, with a proven upper bound on the optimum.</summary>
/// <param name="Starts">The start block of each server in the best placement found.</param>
/// <param name="Found">The swarm throughput of <paramref name="Starts"/> with the real (unrounded) throughputs: a lower bound on the optimum.</param>
/// <param name="UpperBound">A proven upper bound on the optimum (real throughputs): never below it (the least of the solver's bound, the volume bound and the spacing bound, <see cref="OptimumSolver.SpacingBound"/>).</param>
/// <param name="Proven">Whether the solver proved its placement optimal (then the optimum lies in [Found, UpperBound], a gap of at most the rounding bound).</param>
/// <param name="VolumeBound">sum(t_i * L_i) / B: the bound if every block got an equal share of the swarm's capacity.</param>
/// <param name="Seconds">Wall time the solve took.</param>
/// <param name="SolverRan">Whether CP-SAT ran (false when the local search reached the volume bound, which proves the optimum by itself).</param>
internal sealed record OptimumResult(int[] Starts, double Found, double UpperBound, bool Proven, double VolumeBound, double Seconds, bool SolverRan = false);

/// <summary>
/// The optimum placement of servers with fixed span lengths and throughputs: choose a start for every server so that
/// the least summed throughput over blocks is as high as possible (a max-min covering problem, NP-hard in general),
/// solved exactly by CP-SAT (OR-Tools) over integer throughputs.
/// </summary>
/// <remarks>
/// <para>Model: one boolean per (server, start), exactly one start per server, an integer T with
/// <c>sum of w_i over the servers covering b &gt;= T</c> for every block b, maximize T. The integer weights are
/// <c>w_i = ceil(t_i * Scale)</c>: rounding up makes every placement's integer value at least its real value times
/// Scale, so the solver's bound divided by Scale is an upper bound on the real optimum; and a placement optimal for the
/// integer weights is within <c>n / Scale</c> (n servers, each rounded up by less than 1) of the real optimum.</para>
/// <para>Help for the solver: the greedy placement as a hint; T bounded above by the volume and spacing bounds; servers of equal
/// length and weight are interchangeable, so their starts are ordered (symmetry breaking); a local search
/// (<see cref="LocalSearch"/>) improves the hint first, and when it reaches the volume bound the optimum is proven
/// without the solver. The run is deterministic: one worker and a limit in the solver's deterministic time.</para>
/// </remarks>
internal static class OptimumSolver
{
    /// <summary>Integer units per unit of throughput.</summary>
    public const double Scale = 1000;

    /// <summary>Solves one instance.</summary>
    /// <param name="blockCount">B, the model's number of blocks.</param>
    /// <param name="lengths">Each server's span length, 1 to B.</param>
    /// <param name="throughputs">Each server's throughput, finite and positive.</param>
    /// <param name="hint">A placement to start from (e.g. the balancer's), or null.</param>
    /// <param name="deterministicSeconds">The solver's limit in its deterministic time (about seconds on one core).</param>
    /// <param name="seed">Seed of the local search and the solver.</param>
    /// <returns>The best placement found, its value and a proven upper bound.</returns>
    public static OptimumResult Solve(int blockCount, int[] lengths, double[] throughputs, int[]? hint, double deterministicSeconds, int seed)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentNullException.ThrowIfNull(throughputs);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockCount);
        var n = lengths.Length;
        if (throughputs.Length != n || (hint is not null && hint.Length != n))
        {
            throw new ArgumentException($"{n} lengths, {throughputs.Length} throughputs and {hint?.Length} hinted starts: one of each per server.", nameof(throughputs));
        }

        for (var i = 0; i < n; i++)
        {
            if (lengths[i] < 1 || lengths[i] > blockCount)
            {
                throw new ArgumentOutOfRangeException(nameof(lengths), lengths[i], $"Server {i}: span length must be 1 to {blockCount}.");
            }

            if (!double.IsFinite(throughputs[i]) || throughputs[i] <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(throughputs), throughputs[i], $"Server {i}: throughput must be finite and positive.");
            }

            if (hint is not null && (hint[i] < 0 || hint[i] + lengths[i] > blockCount))
            {
                throw new ArgumentOutOfRangeException(nameof(hint), hint[i], $"Server {i}: hinted start puts its {lengths[i]} blocks past block {blockCount}.");
            }
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var volume = 0.0;
        var weights = new long[n];
        long volumeInt = 0;
        for (var i = 0; i < n; i++)
        {
            volume += throughputs[i] * lengths[i];
            weights[i] = (long)Math.Ceiling(throughputs[i] * Scale);
            volumeInt += weights[i] * lengths[i];
        }

        volume /= blockCount;
        var intUpper = Math.Min(volumeInt / blockCount, SpacingBound(blockCount, lengths, weights));
        if (n == 0)
        {
            return new OptimumResult([], 0, 0, true, 0, clock.Elapsed.TotalSeconds);
        }

        // A primal first: the local search from the hint (or from everyone at block 0).
        var start = hint is null ? new int[n] : (int[])hint.Clone();
        var searched = LocalSearch.Improve(blockCount, lengths, weights, start, new Random(seed));
        var searchedValue = LocalSearch.MinCoverage(blockCount, lengths, weights, searched);
        if (searchedValue >= intUpper)
        {
            return new OptimumResult(searched, Value(blockCount, lengths, throughputs, searched), intUpper / Scale, true, volume, clock.Elapsed.TotalSeconds);
        }

        var model = new CpModel();
        var x = new BoolVar[n][];
        var covering = new List<(BoolVar Var, long Weight)>[blockCount];
        for (var b = 0; b < blockCount; b++)
        {
            covering[b] = [];
        }

        var order = SymmetryOrdered(lengths, weights, searched);
        for (var i = 0; i < n; i++)
        {
            var positions = blockCount - lengths[i] + 1;
            x[i] = new BoolVar[positions];
            for (var s = 0; s < positions; s++)
            {
                x[i][s] = model.NewBoolVar(string.Create(CultureInfo.InvariantCulture, $"x{i}_{s}"));
                for (var b = s; b < s + lengths[i]; b++)
                {
                    covering[b].Add((x[i][s], weights[i]));
                }
            }

            model.AddExactlyOne(x[i]);
            for (var s = 0; s < positions; s++)
            {
                model.AddHint(x[i][s], order[i] == s);
            }
        }

        var t = model.NewIntVar(searchedValue, intUpper, "T");
        for (var b = 0; b < blockCount; b++)
        {
            var vars = new List<IntVar>(covering[b].Count);
            var coefficients = new List<long>(covering[b].Count);
            foreach (var (v, w) in covering[b])
            {
                vars.Add(v);
                coefficients.Add(w);
            }

            model.Add(LinearExpr.WeightedSum(vars, coefficients) >= t);
        }

        // Servers of equal length and weight are interchangeable: order their starts.
        for (var i = 0; i < n; i++)
        {
            for (var j = i + 1; j < n; j++)
            {
                if (lengths[i] == lengths[j] && weights[i] == weights[j])
                {
                    model.Add(StartOf(x[i]) <= StartOf(x[j]));
                    break;
                }
            }
        }

        model.Maximize(t);
        var solver = new CpSolver
        {
            StringParameters = string.Create(CultureInfo.InvariantCulture,
                $"num_workers:1 max_deterministic_time:{deterministicSeconds} random_seed:{seed} log_search_progress:false"),
        };
        var status = solver.Solve(model);
        var best = order;
        long bestInt = LocalSearch.MinCoverage(blockCount, lengths, weights, order);
        if (status is CpSolverStatus.Optimal or CpSolverStatus.Feasible && (long)solver.ObjectiveValue > bestInt)
        {
            best = new int[n];
            for (var i = 0; i < n; i++)
            {
                best[i] = Array.FindIndex(x[i], v => solver.BooleanValue(v));
            }

            bestInt = LocalSearch.MinCoverage(blockCount, lengths, weights, best);
        }

        // The solver's bound counts only when it says it searched (optimal or feasible); stopped before that (unknown),
        // its figure is no bound at all and the volume bound stands.
        var bound = status switch
        {
            CpSolverStatus.Optimal => bestInt,
            CpSolverStatus.Feasible => Math.Min(intUpper, (long)Math.Floor(solver.BestObjectiveBound)),
            _ => intUpper,
        };
        bound = Math.Max(bound, bestInt);
        return new OptimumResult(best, Value(blockCount, lengths, throughputs, best), bound / Scale, bestInt >= bound, volume, clock.Elapsed.TotalSeconds, SolverRan: true);
    }

    /// <summary>
    /// An upper bound on the integer optimum that uses that each server sits in one place: for test blocks
    /// <c>o, o + d, o + 2d, …</c> (k of them), a server of length L covers at most <c>c(L)</c> of them wherever it starts,
    /// so the k test blocks hold at most <c>sum of w_i c(L_i)</c> in all and the weakest at most that over k. The least
    /// over every spacing d and offset o. With d = 1 it is the volume bound; larger spacings catch what fractional
    /// placements (the LP relaxation, hence the volume bound) cannot: e.g. 20 equal servers of 10 blocks over 64 blocks
    /// give at most 20/7 per block (7 test blocks 10 apart, one each), not 200/64.
    /// </summary>
    internal static long SpacingBound(int blockCount, int[] lengths, long[] weights)
    {
        var weightByLength = new Dictionary<int, long>();
        for (var i = 0; i < lengths.Length; i++)
        {
            weightByLength[lengths[i]] = weightByLength.GetValueOrDefault(lengths[i]) + weights[i];
        }

        var best = long.MaxValue;
        var below = new int[blockCount + 1];
        for (var d = 1; d <= blockCount; d++)
        {
            for (var o = 0; o < d; o++)
            {
                // below[p]: test blocks before block p.
                for (var p = 0; p < blockCount; p++)
                {
                    below[p + 1] = below[p] + (p >= o && (p - o) % d == 0 ? 1 : 0);
                }

                var k = below[blockCount];
                long held = 0;
                foreach (var (length, weight) in weightByLength)
                {
                    var most = 0;
                    for (var s = 0; s + length <= blockCount; s++)
                    {
                        most = Math.Max(most, below[s + length] - below[s]);
                    }

                    held = checked(held + (weight * most));
                }

                best = Math.Min(best, held / k);
            }
        }

        return best;
    }

    /// <summary>The swarm throughput of a placement: the least summed throughput over blocks.</summary>
    public static double Value(int blockCount, int[] lengths, double[] throughputs, int[] starts)
    {
        var sums = new double[blockCount];
        for (var i = 0; i < lengths.Length; i++)
        {
            for (var b = starts[i]; b < starts[i] + lengths[i]; b++)
            {
                sums[b] += throughputs[i];
            }
        }

        return sums.Length == 0 ? 0 : sums.Min();
    }

    private static LinearExpr StartOf(BoolVar[] x)
    {
        var coefficients = new long[x.Length];
        for (var s = 0; s < x.Length; s++)
        {
            coefficients[s] = s;
        }

        return LinearExpr.WeightedSum(x, coefficients);
    }

    /// <summary>The placement with the starts of interchangeable servers sorted ascending (same value; meets the symmetry constraints).</summary>
    private static int[] SymmetryOrdered(int[] lengths, long[] weights, int[] starts)
    {
        var result = (int[])starts.Clone();
        var groups = new Dictionary<(int, long), List<int>>();
        for (var i = 0; i < lengths.Length; i++)
        {
            var key = (lengths[i], weights[i]);
            if (!groups.TryGetValue(key, out var members))
            {
                groups[key] = members = [];
            }

            members.Add(i);
        }

        foreach (var members in groups.Values)
        {
            var sorted = members.Select(i => starts[i]).Order().ToArray();
            for (var k = 0; k < members.Count; k++)
            {
                result[members[k]] = sorted[k];
            }
        }

        return result;
    }
}
