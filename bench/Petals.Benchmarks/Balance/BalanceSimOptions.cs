using System.Globalization;

namespace Petals.Benchmarks.Balance;

/// <summary>The settings of <c>balance-sim</c> (defaults: the scenario).</summary>
internal sealed record BalanceSimOptions
{
    /// <summary>How many random swarms.</summary>
    public int Swarms { get; init; } = 100;

    public int Seed { get; init; } = 1;

    /// <summary>Server slots per swarm: uniform in [MinServers, MaxServers].</summary>
    public int MinServers { get; init; } = 10;

    public int MaxServers { get; init; } = 50;

    /// <summary>Blocks per model: uniform in [MinBlocks, MaxBlocks].</summary>
    public int MinBlocks { get; init; } = 32;

    public int MaxBlocks { get; init; } = 80;

    /// <summary>Server throughputs are log-uniform in [1, MaxThroughput] (20: the 1x-20x spread).</summary>
    public double MaxThroughput { get; init; } = 20;

    /// <summary>A server's memory holds a log-uniform share of the model in [MinSpanShare, MaxSpanShare]: its span is floor(share x blocks), at least 1.</summary>
    public double MinSpanShare { get; init; } = 0.125;

    public double MaxSpanShare { get; init; } = 0.5;

    /// <summary>Simulated hours of churn per swarm.</summary>
    public double Hours { get; init; } = 4;

    /// <summary>States sampled per swarm (at Hours * k / States, k = 1..States), each solved for the optimum.</summary>
    public int States { get; init; } = 4;

    /// <summary>Mean lifetime of a server before it crashes (exponential).</summary>
    public double LifetimeMinutes { get; init; } = 120;

    /// <summary>Mean time before a crashed server's slot gets a new server (exponential).</summary>
    public double DowntimeMinutes { get; init; } = 15;

    /// <summary>Mean balance period; each wait is uniform in [0, 2 x period] as in Petals.</summary>
    public double PeriodSeconds { get; init; } = 120;

    public double Quality { get; init; } = 0.75;

    /// <summary>The optimum solver's limit per state, in CP-SAT's deterministic time (about seconds on one core).</summary>
    public double SolveSeconds { get; init; } = 2;

    public bool Json { get; init; }

    /// <summary>Where to write the PNG of one swarm's throughput over time (null: no plot).</summary>
    public string? Plot { get; init; }

    /// <summary>Which swarm the plot follows.</summary>
    public int PlotSwarm { get; init; }

    /// <summary>How many points of time the plot solves.</summary>
    public int PlotPoints { get; init; } = 48;

    public static BalanceSimOptions Parse(ReadOnlySpan<string> args)
    {
        var o = new BalanceSimOptions();
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"{name} needs a value.");
            }

            var value = args[++i];
            o = name switch
            {
                "--swarms" => o with { Swarms = OptionValues.Int(name, value, 1) },
                "--seed" => o with { Seed = OptionValues.Int(name, value, 0) },
                "--min-servers" => o with { MinServers = OptionValues.Int(name, value, 1) },
                "--max-servers" => o with { MaxServers = OptionValues.Int(name, value, 1) },
                "--min-blocks" => o with { MinBlocks = OptionValues.Int(name, value, 1) },
                "--max-blocks" => o with { MaxBlocks = OptionValues.Int(name, value, 1) },
                "--hours" => o with { Hours = OptionValues.Positive(name, value) },
                "--max-throughput" => o with { MaxThroughput = OptionValues.Positive(name, value) },
                "--min-span-share" => o with { MinSpanShare = OptionValues.Positive(name, value) },
                "--max-span-share" => o with { MaxSpanShare = OptionValues.Positive(name, value) },
                "--states" => o with { States = OptionValues.Int(name, value, 1) },
                "--lifetime-minutes" => o with { LifetimeMinutes = OptionValues.Positive(name, value) },
                "--downtime-minutes" => o with { DowntimeMinutes = OptionValues.Positive(name, value) },
                "--period" => o with { PeriodSeconds = OptionValues.Positive(name, value) },
                "--quality" => o with { Quality = OptionValues.Positive(name, value) },
                "--solve-seconds" => o with { SolveSeconds = OptionValues.Positive(name, value) },
                "--output" => o with
                {
                    Json = value switch
                    {
                        "json" => true,
                        "text" => false,
                        _ => throw new ArgumentException($"--output must be text or json, not '{value}'."),
                    },
                },
                "--plot" => o with { Plot = value },
                "--plot-swarm" => o with { PlotSwarm = OptionValues.Int(name, value, 0) },
                "--plot-points" => o with { PlotPoints = OptionValues.Int(name, value, 2) },
                _ => throw new ArgumentException($"Unknown option {name} for balance-sim."),
            };
        }

        if (o.MinServers > o.MaxServers)
        {
            throw new ArgumentException($"--min-servers {o.MinServers} is above --max-servers {o.MaxServers}.");
        }

        if (o.MinBlocks > o.MaxBlocks)
        {
            throw new ArgumentException($"--min-blocks {o.MinBlocks} is above --max-blocks {o.MaxBlocks}.");
        }

        if (o.MaxThroughput < 1)
        {
            throw new ArgumentException($"--max-throughput {o.MaxThroughput} is below 1 (throughputs are log-uniform in [1, max]).");
        }

        if (o.MinSpanShare > o.MaxSpanShare || o.MaxSpanShare > 1)
        {
            throw new ArgumentException($"--min-span-share {o.MinSpanShare} and --max-span-share {o.MaxSpanShare} must satisfy 0 < min <= max <= 1.");
        }

        if (o.Plot is not null && o.PlotSwarm >= o.Swarms)
        {
            throw new ArgumentException($"--plot-swarm {o.PlotSwarm} is not one of the {o.Swarms} swarms.");
        }

        return o;
    }
}
