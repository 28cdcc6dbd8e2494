using System.Text.Json;
using System.Text.RegularExpressions;
using Petals.Benchmarks.Balance;

namespace Petals.Benchmarks.Tests;

public sealed partial class BalanceSimTests
{
    private static readonly string[] Tiny =
        ["--swarms", "3", "--min-servers", "4", "--max-servers", "7", "--min-blocks", "6", "--max-blocks", "10", "--hours", "1", "--states", "2", "--solve-seconds", "0.2", "--lifetime-minutes", "30"];

    /// <summary>The best min coverage over every placement, by enumeration.</summary>
    private static double BruteForce(int blocks, int[] lengths, double[] throughputs)
    {
        var n = lengths.Length;
        var starts = new int[n];
        var best = double.NegativeInfinity;
        while (true)
        {
            best = Math.Max(best, OptimumSolver.Value(blocks, lengths, throughputs, starts));
            var i = 0;
            while (i < n && ++starts[i] > blocks - lengths[i])
            {
                starts[i++] = 0;
            }

            if (i == n)
            {
                return best;
            }
        }
    }

    private static (int Blocks, int[] Lengths, double[] Throughputs) Instance(Random random, bool integral)
    {
        var blocks = random.Next(1, 8);
        var n = random.Next(1, 6);
        var lengths = Enumerable.Range(0, n).Select(_ => random.Next(1, blocks + 1)).ToArray();
        var throughputs = Enumerable.Range(0, n).Select(_ => integral ? random.Next(1, 6) : Math.Exp(random.NextDouble() * Math.Log(20))).ToArray();
        return (blocks, lengths, throughputs);
    }

    [Fact]
    public void The_optimum_of_integral_throughputs_is_the_brute_force_optimum_exactly()
    {
        var random = new Random(11);
        var solverRuns = 0;
        for (var trial = 0; trial < 150; trial++)
        {
            var (blocks, lengths, throughputs) = Instance(random, integral: true);
            var brute = BruteForce(blocks, lengths, throughputs);

            var result = OptimumSolver.Solve(blocks, lengths, throughputs, hint: null, deterministicSeconds: 5, seed: trial);

            var where = $"trial {trial}: {blocks} blocks, lengths [{string.Join(",", lengths)}], throughputs [{string.Join(",", throughputs)}]: brute {brute}, {result}";
            Assert.True(result.Proven, where);
            Assert.Equal(brute, result.Found, 9);
            Assert.Equal(brute, result.UpperBound, 9);
            Assert.Equal(result.Found, OptimumSolver.Value(blocks, lengths, throughputs, result.Starts), 9);
            Assert.True(result.VolumeBound >= brute - 1e-9, where);
            solverRuns += result.SolverRan ? 1 : 0;
        }

        // Both ways of proving were exercised: the local search reaching the volume bound, and CP-SAT.
        Assert.InRange(solverRuns, 10, 140);
    }

    [Fact]
    public void With_real_throughputs_the_optimum_lies_between_found_and_the_bound_within_the_rounding_bound()
    {
        var random = new Random(12);
        for (var trial = 0; trial < 150; trial++)
        {
            var (blocks, lengths, throughputs) = Instance(random, integral: false);
            var brute = BruteForce(blocks, lengths, throughputs);
            var hint = lengths.Select(l => random.Next(0, blocks - l + 1)).ToArray();

            var result = OptimumSolver.Solve(blocks, lengths, throughputs, hint, deterministicSeconds: 5, seed: trial);

            // Weights are ceil(t * Scale): each server is off by less than 1 / Scale.
            var rounding = lengths.Length / OptimumSolver.Scale;
            var where = $"trial {trial}: {blocks} blocks, lengths [{string.Join(",", lengths)}], throughputs [{string.Join(",", throughputs.Select(t => t.ToString("R", System.Globalization.CultureInfo.InvariantCulture)))}]: brute {brute}, {result}";
            Assert.True(result.Proven, where);
            Assert.True(result.Found <= brute + 1e-9 && result.Found >= brute - rounding, where);
            Assert.True(result.UpperBound >= brute - 1e-9 && result.UpperBound <= brute + rounding, where);
            Assert.True(result.Found >= OptimumSolver.Value(blocks, lengths, throughputs, hint) - rounding, where);

            // Stopped almost at once, the solver proves less but never claims a bound below the optimum.
            var hurried = OptimumSolver.Solve(blocks, lengths, throughputs, hint, deterministicSeconds: 1e-6, seed: trial);
            Assert.True(hurried.UpperBound >= brute - 1e-9 && hurried.Found <= brute + 1e-9, $"hurried: {hurried}; {where}");
            Assert.True(!hurried.Proven || hurried.Found >= brute - rounding, $"hurried: {hurried}; {where}");
        }
    }

    [Fact]
    public void An_instance_the_volume_bound_overstates_is_proven_by_the_solver()
    {
        // Two blocks, two one-block servers of 1 and 2: the volume bound says 1.5, the optimum is 1.
        var result = OptimumSolver.Solve(2, [1, 1], [1, 2], hint: [0, 0], deterministicSeconds: 5, seed: 1);

        Assert.True(result.SolverRan);
        Assert.True(result.Proven);
        Assert.Equal(1.5, result.VolumeBound, 9);
        Assert.Equal(1, result.Found, 9);
        Assert.Equal(1, result.UpperBound, 9);
        Assert.NotEqual(result.Starts[0], result.Starts[1]);
    }

    [Fact]
    public void The_spacing_bound_never_falls_below_the_optimum_and_catches_what_the_volume_bound_misses()
    {
        // 20 equal servers of 10 blocks over 64: 200 / 64 = 3.1 per block by volume, but 7 blocks 10 apart get one
        // server each at most: 20 / 7, so at most 2 whole servers per block.
        Assert.Equal(2, OptimumSolver.SpacingBound(64, Enumerable.Repeat(10, 20).ToArray(), Enumerable.Repeat(1L, 20).ToArray()));
        var equal = OptimumSolver.Solve(64, Enumerable.Repeat(10, 20).ToArray(), Enumerable.Repeat(1.0, 20).ToArray(), hint: null, deterministicSeconds: 5, seed: 1);
        Assert.True(equal.Proven, equal.ToString());
        Assert.Equal(2, equal.Found, 9);
        Assert.True(equal.VolumeBound > 3, equal.ToString());

        var random = new Random(13);
        for (var trial = 0; trial < 200; trial++)
        {
            var blocks = random.Next(1, 10);
            var n = random.Next(1, 5);
            var lengths = Enumerable.Range(0, n).Select(_ => random.Next(1, blocks + 1)).ToArray();
            var weights = Enumerable.Range(0, n).Select(_ => (long)random.Next(1, 9)).ToArray();
            var brute = BruteForce(blocks, lengths, weights.Select(w => (double)w).ToArray());
            var bound = OptimumSolver.SpacingBound(blocks, lengths, weights);
            Assert.True(bound >= brute, $"trial {trial}: {blocks} blocks, lengths [{string.Join(",", lengths)}], weights [{string.Join(",", weights)}]: spacing bound {bound} < optimum {brute}");
            Assert.True(bound <= weights.Select((w, i) => w * lengths[i]).Sum() / blocks, $"trial {trial}: above the volume bound");
        }
    }

    [Fact]
    public void The_solver_refuses_instances_that_are_not_placements()
    {
        Assert.Equal("lengths", Assert.Throws<ArgumentOutOfRangeException>(() => OptimumSolver.Solve(4, [5], [1], null, 1, 1)).ParamName);
        Assert.Equal("lengths", Assert.Throws<ArgumentOutOfRangeException>(() => OptimumSolver.Solve(4, [0], [1], null, 1, 1)).ParamName);
        Assert.Equal("throughputs", Assert.Throws<ArgumentOutOfRangeException>(() => OptimumSolver.Solve(4, [1], [0], null, 1, 1)).ParamName);
        Assert.Equal("throughputs", Assert.Throws<ArgumentOutOfRangeException>(() => OptimumSolver.Solve(4, [1], [double.NaN], null, 1, 1)).ParamName);
        Assert.Equal("hint", Assert.Throws<ArgumentOutOfRangeException>(() => OptimumSolver.Solve(4, [2], [1], [3], 1, 1)).ParamName);
        Assert.Equal("throughputs", Assert.Throws<ArgumentException>(() => OptimumSolver.Solve(4, [1, 1], [1], null, 1, 1)).ParamName);
        Assert.Equal("blockCount", Assert.Throws<ArgumentOutOfRangeException>(() => OptimumSolver.Solve(0, [1], [1], null, 1, 1)).ParamName);
    }

    [Fact]
    public void Json_output_is_a_line_per_swarm_and_a_summary()
    {
        var output = new StringWriter();
        Assert.Equal(0, BalanceSim.Run(BalanceSimOptions.Parse([.. Tiny, "--output", "json"]), output, null));

        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        var ratios = new List<double>();
        for (var i = 0; i < 3; i++)
        {
            using var swarm = JsonDocument.Parse(lines[i]);
            var root = swarm.RootElement;
            Assert.Equal(i, root.GetProperty("swarm").GetInt32());
            Assert.InRange(root.GetProperty("servers").GetInt32(), 4, 7);
            Assert.InRange(root.GetProperty("blocks").GetInt32(), 6, 10);
            var ratio = root.GetProperty("ratio").GetDouble();
            Assert.InRange(ratio, 0, 1);
            Assert.InRange(root.GetProperty("min_ratio").GetDouble(), 0, ratio);
            Assert.InRange(root.GetProperty("ratio_no_rebalance").GetDouble(), 0, 1);
            Assert.InRange(root.GetProperty("proven").GetInt32(), 0, 2);
            Assert.True(root.GetProperty("moves").GetInt32() >= 0);
            Assert.True(root.GetProperty("server_hours").GetDouble() > 0);
            Assert.True(root.GetProperty("moves_per_server_hour").GetDouble() >= 0);
            var states = root.GetProperty("throughput").EnumerateArray().ToArray();
            Assert.Equal(2, states.Length);
            foreach (var state in states)
            {
                var upper = state.GetProperty("upper").GetDouble();
                Assert.True(state.GetProperty("greedy").GetDouble() <= upper + 1e-3, lines[i]);
                Assert.True(state.GetProperty("found").GetDouble() <= upper + 1e-3, lines[i]);
                Assert.True(upper <= state.GetProperty("volume").GetDouble() + 1e-3, lines[i]);
            }

            ratios.Add(ratio);
        }

        using var summary = JsonDocument.Parse(lines[3]);
        var s = summary.RootElement;
        Assert.Equal(3, s.GetProperty("swarms").GetInt32());
        Assert.Equal(ratios.Average(), s.GetProperty("mean_ratio").GetDouble(), 3);
        Assert.InRange(s.GetProperty("worst_ratio").GetDouble(), 0, ratios.Min());
        Assert.InRange(s.GetProperty("mean_ratio_no_rebalance").GetDouble(), 0, 1);
        Assert.InRange(s.GetProperty("proven_share").GetDouble(), 0, 1);
        Assert.Equal(6, s.GetProperty("states").GetInt32());
        Assert.True(s.GetProperty("moves_per_server_hour").GetDouble() >= 0);
    }

    [Fact]
    public void A_seed_gives_the_same_run_and_another_seed_another()
    {
        static string Run(string seed)
        {
            var output = new StringWriter();
            BalanceSim.Run(BalanceSimOptions.Parse([.. Tiny, "--output", "json", "--seed", seed]), output, null);

            // Everything but the wall times.
            return SolveTime().Replace(output.ToString(), string.Empty);
        }

        var first = Run("5");
        Assert.Equal(first, Run("5"));
        Assert.NotEqual(first, Run("6"));
    }

    [Fact]
    public void The_churn_is_replayed_identically_with_and_without_rebalancing_and_only_the_balancer_moves_servers()
    {
        var options = BalanceSimOptions.Parse(["--min-servers", "12", "--max-servers", "12", "--min-blocks", "20", "--max-blocks", "20", "--hours", "3", "--states", "3", "--seed", "3"]);
        var (blocks, slots, servers) = BalanceSim.Scenario(options, 0);
        var times = new[] { 3600.0, 7200, 10800 };

        var moving = BalanceSim.Replay(options, 0, blocks, servers, times, rebalance: true);
        var still = BalanceSim.Replay(options, 0, blocks, servers, times, rebalance: false);

        Assert.Equal(20, blocks);
        Assert.Equal(12, slots);
        Assert.True(servers.Length > slots, "servers crash and new ones join");
        Assert.All(servers, s => Assert.InRange(s.Throughput, 1, 20));
        Assert.All(servers, s => Assert.InRange(s.Length, 2, 10)); // floor of 1/8 .. 1/2 of 20 blocks
        Assert.All(servers, s => Assert.True(s.LeaveAt > s.JoinAt));
        Assert.Equal(0, still.Moves);
        Assert.Equal(0, still.Evaluations);
        Assert.True(moving.Moves > 0, "some server moved");
        Assert.True(moving.Evaluations > moving.Moves);
        for (var k = 0; k < times.Length; k++)
        {
            Assert.Equal(moving.Snapshots[k].Servers, still.Snapshots[k].Servers);
            Assert.All(moving.Snapshots[k].Servers, s => Assert.True(s.JoinAt < times[k] && s.LeaveAt >= times[k]));
        }

        Assert.Equal(moving.ServerHours, still.ServerHours);
    }

    [Fact]
    public void The_plot_is_a_png()
    {
        var path = Path.Combine(Path.GetTempPath(), $"balance-sim-{Environment.ProcessId}.png");
        try
        {
            var line = BalancePlot.Write(BalanceSimOptions.Parse([.. Tiny, "--plot", path, "--plot-points", "3"]), path);

            Assert.Contains("3 states", line, StringComparison.Ordinal);
            var bytes = File.ReadAllBytes(path);
            Assert.True(bytes.Length > 1000);
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("--swarms", "0")]
    [InlineData("--hours", "-1")]
    [InlineData("--quality", "x")]
    [InlineData("--output", "xml")]
    [InlineData("--bogus", "1")]
    [InlineData("--states")]
    public void Bad_options_are_refused_with_their_name(params string[] args)
    {
        var error = Assert.Throws<ArgumentException>(() => BalanceSimOptions.Parse(args));
        Assert.Contains(args[0], error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Inconsistent_ranges_are_refused()
    {
        Assert.Contains("--min-servers", Assert.Throws<ArgumentException>(() => BalanceSimOptions.Parse(["--min-servers", "9", "--max-servers", "8"])).Message, StringComparison.Ordinal);
        Assert.Contains("--min-blocks", Assert.Throws<ArgumentException>(() => BalanceSimOptions.Parse(["--min-blocks", "9", "--max-blocks", "8"])).Message, StringComparison.Ordinal);
        Assert.Contains("--plot-swarm", Assert.Throws<ArgumentException>(() => BalanceSimOptions.Parse(["--swarms", "2", "--plot", "x.png", "--plot-swarm", "2"])).Message, StringComparison.Ordinal);
    }

    [GeneratedRegex("\"solve_s\":[0-9.eE+-]+,?")]
    private static partial Regex SolveTime();
}
