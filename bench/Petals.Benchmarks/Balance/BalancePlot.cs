using System.Globalization;
using ScottPlot;

namespace Petals.Benchmarks.Balance;

/// <summary>The PNG of one swarm over time: its throughput with and without rebalancing, the best placement found and the proven upper bound.</summary>
internal static class BalancePlot
{
    /// <summary>Replays swarm <see cref="BalanceSimOptions.PlotSwarm"/> with <see cref="BalanceSimOptions.PlotPoints"/> snapshots, solves each and writes the PNG.</summary>
    /// <returns>A line saying what was written.</returns>
    public static string Write(BalanceSimOptions options, string path)
    {
        var index = options.PlotSwarm;
        var (blocks, slots, servers) = BalanceSim.Scenario(options, index);
        var times = Enumerable.Range(1, options.PlotPoints).Select(k => options.Hours * 3600 * k / options.PlotPoints).ToArray();
        var withMoves = BalanceSim.Replay(options, index, blocks, servers, times, rebalance: true);
        var without = BalanceSim.Replay(options, index, blocks, servers, times, rebalance: false);
        var states = new StateResult[times.Length];
        for (var k = 0; k < times.Length; k++)
        {
            states[k] = BalanceSim.Measure(options, blocks, withMoves.Snapshots[k], without.Snapshots[k], BalanceSim.SeedOf(options.Seed, index, 5000 + k));
        }

        var hours = times.Select(t => t / 3600).ToArray();
        var plot = new Plot();
        Line(plot, hours, states.Select(s => s.Optimum.UpperBound).ToArray(), "optimum: proven upper bound", Colors.Gray, LinePattern.Dashed);
        Line(plot, hours, states.Select(s => s.Optimum.Found).ToArray(), "optimum: best placement found", Colors.Black, LinePattern.Solid);
        Line(plot, hours, states.Select(s => s.Throughput).ToArray(), "greedy with rebalancing (quality 0.75)", Colors.Blue, LinePattern.Solid);
        Line(plot, hours, states.Select(s => s.ThroughputNoRebalance).ToArray(), "greedy, join-time choice only", Colors.OrangeRed, LinePattern.Dotted);
        var online = states.Select(s => (double)s.Servers).ToArray();
        plot.Title(string.Create(CultureInfo.InvariantCulture,
            $"balance-sim swarm {index} (seed {options.Seed}): {slots} server slots, {blocks} blocks, churn over {options.Hours:0.#} h"));
        plot.XLabel(string.Create(CultureInfo.InvariantCulture, $"simulated time (h); online servers {online.Min():0}-{online.Max():0}"));
        plot.YLabel("swarm throughput (relative units)");
        plot.ShowLegend(Alignment.LowerRight);
        plot.Axes.SetLimitsY(0, states.Max(s => s.Optimum.UpperBound) * 1.1);
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null)
        {
            Directory.CreateDirectory(directory);
        }

        plot.SavePng(path, 1100, 550);
        var ratio = states.Average(s => s.Ratio);
        return string.Create(CultureInfo.InvariantCulture,
            $"plot: {path} (swarm {index}, {times.Length} states, mean ratio {ratio:0.000}, without rebalancing {states.Average(s => s.RatioNoRebalance):0.000}, proven {states.Count(s => s.Optimum.Proven)}/{states.Length})");
    }

    private static void Line(Plot plot, double[] xs, double[] ys, string label, Color color, LinePattern pattern)
    {
        var line = plot.Add.Scatter(xs, ys);
        line.LegendText = label;
        line.Color = color;
        line.LinePattern = pattern;
        line.LineWidth = 2;
        line.MarkerSize = 4;
    }
}
