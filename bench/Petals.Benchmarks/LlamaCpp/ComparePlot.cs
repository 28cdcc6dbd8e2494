using System.Globalization;
using ScottPlot;

namespace Petals.Benchmarks.LlamaCpp;

/// <summary>Bar chart of ours / llama.cpp per file and case, with the targets as lines.</summary>
internal static class ComparePlot
{
    public static void Write(IReadOnlyList<CompareRow> rows, string path)
    {
        var plot = new Plot();
        var ticks = new List<Tick>();
        var palette = new ScottPlot.Palettes.Category10();
        var cases = rows.Select(r => r.Case).Distinct().ToList();
        var x = 0.0;
        var groups = rows.GroupBy(r => (r.Shape, r.Format)).ToList();
        foreach (var group in groups)
        {
            foreach (var r in group)
            {
                var color = palette.GetColor(cases.IndexOf(r.Case));
                var bar = new Bar { Position = x, Value = r.Ratio ?? 0, FillColor = color, Label = r.Ratio is { } v ? v.ToString("F2", CultureInfo.InvariantCulture) : "n/a" };
                plot.Add.Bar(bar);
                x += 1;
            }

            ticks.Add(new Tick(x - ((group.Count() + 1) / 2.0), $"{group.Key.Shape}\n{group.Key.Format}"));
            x += 1;
        }

        foreach (var (c, i) in cases.Select((c, i) => (c, i)))
        {
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = c, FillColor = palette.GetColor(i) });
        }

        var target = plot.Add.HorizontalLine(1.0);
        target.LinePattern = LinePattern.Dashed;
        target.Color = Colors.Gray;
        var quantTarget = plot.Add.HorizontalLine(1.2);
        quantTarget.LinePattern = LinePattern.Dotted;
        quantTarget.Color = Colors.Gray;
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.Title("ours / llama.cpp (tokens/s, 2 threads; n/a: our loader does not serve the format yet)");
        plot.YLabel("ratio (1.0 dashed, 1.2 dotted)");
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(path, Math.Max(800, 60 * (int)x), 500);
    }
}
