using System.Globalization;
using System.Text;

namespace Petals.Benchmarks;

/// <summary>The fault-tolerance table in the paper's layout, plus Algorithm 1's ratio to its failure-free rate and the details of each cell.</summary>
internal static class FaultReport
{
    /// <summary>The median steps/s of a cell's finished runs, or of all its runs when none finished (then marked partial), or null when it has none.</summary>
    public static (double Value, bool Partial)? Cell(IReadOnlyList<FaultRun> runs, FaultStrategy strategy, int length, double rate)
    {
        var cell = runs.Where(r => r.Strategy == strategy && r.Length == length && r.Rate.Equals(rate)).ToList();
        if (cell.Count == 0)
        {
            return null;
        }

        var finished = cell.Where(r => r.Finished).Select(r => r.StepsPerSecond).ToList();
        return finished.Count > 0 ? (Median(finished), false) : (Median([.. cell.Select(r => r.StepsPerSecond)]), true);
    }

    public static string ToMarkdown(FaultTableOptions o, IReadOnlyList<FaultRun> runs, double localStepsPerSecond)
    {
        var text = new StringBuilder();
        var rates = o.Rates;
        text.Append("| Strategy (steps/s) |");
        foreach (var length in o.Lengths)
        {
            foreach (var rate in rates)
            {
                text.Append(CultureInfo.InvariantCulture, $" {length}: p = {Rate(rate)} |");
            }
        }

        text.AppendLine();
        text.Append("|---|").Append(string.Concat(Enumerable.Repeat("---:|", o.Lengths.Count * rates.Count))).AppendLine();
        var footnotes = new List<string>();
        foreach (var strategy in o.Strategies)
        {
            text.Append(CultureInfo.InvariantCulture, $"| {Title(strategy)} |");
            foreach (var length in o.Lengths)
            {
                foreach (var rate in rates)
                {
                    var cell = Cell(runs, strategy, length, rate);
                    if (cell is null)
                    {
                        text.Append(" |");
                    }
                    else if (!cell.Value.Partial)
                    {
                        var all = runs.Where(r => r.Strategy == strategy && r.Length == length && r.Rate.Equals(rate)).ToList();
                        var capped = all.Count(r => !r.Finished);
                        if (capped == 0)
                        {
                            text.Append(CultureInfo.InvariantCulture, $" {cell.Value.Value:F2} |");
                        }
                        else
                        {
                            text.Append(CultureInfo.InvariantCulture, $" ≤ {cell.Value.Value:F2}† |");
                            footnotes.Add(string.Create(CultureInfo.InvariantCulture, $"† {Title(strategy)}, {length} tokens, p = {Rate(rate)}: {capped} of {all.Count} runs did not finish within the {o.CapFor(strategy):F0} s cap (so the cell was not repeated further); the value is the median of the finished runs, an upper bound."));
                        }
                    }
                    else if (runs.Any(r => r.Strategy == strategy && r.Length == length && r.Rate.Equals(rate) && r.Failed))
                    {
                        var failed = runs.First(r => r.Strategy == strategy && r.Length == length && r.Rate.Equals(rate) && r.Failed);
                        text.Append(" failed |");
                        footnotes.Add(string.Create(CultureInfo.InvariantCulture, $"failed: {Title(strategy)}, {length} tokens, p = {Rate(rate)}: the generation broke off after {failed.Steps} of {length} tokens: {failed.FirstError?.ReplaceLineEndings(" ")}"));
                    }
                    else if (strategy == FaultStrategy.NoCaching)
                    {
                        var steps = runs.Where(r => r.Strategy == strategy && r.Length == length && r.Rate.Equals(rate)).Max(r => r.Steps);
                        text.Append(CultureInfo.InvariantCulture, $" {cell.Value.Value:F2}\\* |");
                        footnotes.Add(string.Create(CultureInfo.InvariantCulture, $"\\* {Title(strategy)}, {length} tokens, p = {Rate(rate)}: stopped at the {o.CapFor(strategy):F0} s cap after {steps} of {length} steps; steps/s over the steps that ran (later steps are slower, so the full sequence would be slower still)."));
                    }
                    else
                    {
                        var best = runs.Where(r => r.Strategy == strategy && r.Length == length && r.Rate.Equals(rate)).Max(r => Math.Max(r.Furthest, r.Steps));
                        text.Append(" – |");
                        footnotes.Add(string.Create(CultureInfo.InvariantCulture, $"– {Title(strategy)}, {length} tokens, p = {Rate(rate)}: no run finished within the {o.CapFor(strategy):F0} s cap (the furthest attempt reached {best} of {length} tokens)."));
                    }
                }
            }

            text.AppendLine();
        }

        if (o.Strategies.Contains(FaultStrategy.Algorithm1))
        {
            text.Append("| Algorithm 1 / its p = 0 rate |");
            foreach (var length in o.Lengths)
            {
                var baseline = Cell(runs, FaultStrategy.Algorithm1, length, 0);
                foreach (var rate in rates)
                {
                    var cell = Cell(runs, FaultStrategy.Algorithm1, length, rate);
                    text.Append(baseline is { Partial: false } b && cell is { Partial: false } c
                        ? string.Create(CultureInfo.InvariantCulture, $" {100 * c.Value / b.Value:F0} % |")
                        : " |");
                }
            }

            text.AppendLine();
        }

        text.AppendLine();
        foreach (var note in footnotes)
        {
            text.AppendLine(note).AppendLine();
        }

        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"Local reference (all blocks in one executor, no network): {localStepsPerSecond:F1} steps/s."));
        text.AppendLine();
        text.AppendLine("| Strategy | tokens | p | runs (finished) | steps/s per run | failures injected | restarts / retries / recoveries | recovery ms, median (max) | tokens replayed | forward passes | tokens = reference |");
        text.AppendLine("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|");
        foreach (var length in o.Lengths)
        {
            foreach (var strategy in o.Strategies)
            {
                foreach (var rate in rates)
                {
                    var cell = runs.Where(r => r.Strategy == strategy && r.Length == length && r.Rate.Equals(rate)).ToList();
                    if (cell.Count == 0)
                    {
                        continue;
                    }

                    text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {Title(strategy)} | {length} | {Rate(rate)} | {cell.Count} ({cell.Count(r => r.Finished)}) | {string.Join(", ", cell.Select(r => r.StepsPerSecond.ToString("F2", CultureInfo.InvariantCulture) + (r.Finished ? string.Empty : r.Failed ? " (failed)" : " (cap)")))} | {cell.Sum(r => r.Failures)} | {cell.Sum(r => r.Recoveries)} | {RecoveryCell(cell)} | {(strategy == FaultStrategy.Algorithm1 ? cell.Sum(r => r.ReplayedTokens).ToString(CultureInfo.InvariantCulture) : string.Empty)} | {cell.Sum(r => r.ExecutedSteps)} | {(cell.All(r => r.TokensMatch) ? "yes" : "NO")} |"));
                }
            }
        }

        var errors = runs.Where(r => r.FirstError is not null).Select(r => $"{Title(r.Strategy)}: {r.FirstError}").Distinct().Take(5).ToList();
        if (errors.Count > 0)
        {
            text.AppendLine().AppendLine("First failures seen by the client (up to five kinds):").AppendLine();
            foreach (var error in errors)
            {
                text.AppendLine("- " + error.ReplaceLineEndings(" "));
            }
        }

        return text.ToString();
    }

    private static string RecoveryCell(List<FaultRun> cell)
    {
        var all = cell.SelectMany(r => r.RecoveryMs).ToList();
        return all.Count == 0 ? string.Empty : string.Create(CultureInfo.InvariantCulture, $"{Median([.. all]):F0} ({all.Max():F0})");
    }

    public static string Title(FaultStrategy strategy) => strategy switch
    {
        FaultStrategy.CachingWithRestarts => "Caching with restarts",
        FaultStrategy.NoCaching => "No caching",
        FaultStrategy.Algorithm1 => "Algorithm 1",
        _ => throw new ArgumentOutOfRangeException(nameof(strategy), strategy, null),
    };

    private static string Rate(double rate) => rate == 0 ? "0" : rate.ToString("0.##e0", CultureInfo.InvariantCulture);

    public static double Median(List<double> values)
    {
        values.Sort();
        var n = values.Count;
        return n % 2 == 1 ? values[n / 2] : (values[(n / 2) - 1] + values[n / 2]) / 2;
    }
}
