using System.Globalization;

namespace Petals.Benchmarks;

/// <summary>The inference strategies the fault-tolerance table compares (Table 1 of the Petals paper).</summary>
internal enum FaultStrategy
{
    /// <summary>Server-side caches; on a failure the whole generation restarts from scratch on a newly routed chain.</summary>
    CachingWithRestarts,

    /// <summary>No caches: every step runs the whole prefix statelessly; a failed step is retried on a newly routed chain.</summary>
    NoCaching,

    /// <summary>Algorithm 1: one session through the sequence manager, which replaces a failed span and replays its history.</summary>
    Algorithm1,
}

/// <summary>Options of the <c>fault-table</c> benchmark.</summary>
internal sealed record FaultTableOptions
{
    public int Blocks { get; init; } = 8;

    public int Hidden { get; init; } = 512;

    public int Stages { get; init; } = 4;

    public int Replicas { get; init; } = 2;

    public double RttMs { get; init; } = 10;

    /// <summary>Bandwidth of each direction of each connection in Mbit/s; 0 for unlimited.</summary>
    public double BandwidthMbps { get; init; } = 1000;

    public IReadOnlyList<int> Lengths { get; init; } = [128, 1024];

    public IReadOnlyList<double> Rates { get; init; } = [0, 1e-4, 1e-3, 1e-2];

    public IReadOnlyList<FaultStrategy> Strategies { get; init; } = [FaultStrategy.CachingWithRestarts, FaultStrategy.NoCaching, FaultStrategy.Algorithm1];

    public int Seed { get; init; } = 1;

    /// <summary>Repetitions of each cell for sequences of at most 256 tokens.</summary>
    public int Repetitions { get; init; } = 3;

    /// <summary>Repetitions of each cell for longer sequences.</summary>
    public int LongRepetitions { get; init; } = 1;

    /// <summary>The longest one run may take; a run still going is stopped and reported as not finished.</summary>
    public double CapSeconds { get; init; } = 120;

    /// <summary>The cap of a no-caching run (O(n²): its steps/s is then reported over the steps that ran).</summary>
    public double NoCachingCapSeconds { get; init; } = 60;

    public double CapFor(FaultStrategy strategy) => strategy == FaultStrategy.NoCaching ? Math.Min(CapSeconds, NoCachingCapSeconds) : CapSeconds;

    public int Threads { get; init; } = 2;

    public bool Json { get; init; }

    /// <summary>When set, every run is also written to this file as a JSON line.</summary>
    public string? JsonLines { get; init; }

    public int RepetitionsFor(int length) => length <= 256 ? Repetitions : LongRepetitions;

    public static FaultTableOptions Parse(ReadOnlySpan<string> args)
    {
        var o = new FaultTableOptions();
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
                "--blocks" => o with { Blocks = OptionValues.Int(name, value, 1) },
                "--hidden" => o with { Hidden = OptionValues.Int(name, value, 64) },
                "--stages" => o with { Stages = OptionValues.Int(name, value, 1) },
                "--replicas" => o with { Replicas = OptionValues.Int(name, value, 1) },
                "--rtt-ms" => o with { RttMs = OptionValues.NonNegative(name, value) },
                "--bandwidth-mbps" => o with { BandwidthMbps = OptionValues.NonNegative(name, value) },
                "--lengths" => o with { Lengths = [.. Split(value).Select(v => OptionValues.Int(name, v, 2))] },
                "--rates" => o with { Rates = [.. Split(value).Select(v => Rate(name, v))] },
                "--strategies" => o with { Strategies = [.. Split(value).Select(v => Strategy(name, v)).Distinct()] },
                "--seed" => o with { Seed = OptionValues.Int(name, value, 0) },
                "--repetitions" => o with { Repetitions = OptionValues.Int(name, value, 1) },
                "--long-repetitions" => o with { LongRepetitions = OptionValues.Int(name, value, 1) },
                "--cap-s" => o with { CapSeconds = OptionValues.NonNegative(name, value) is > 0 and var cap ? cap : throw new ArgumentException($"{name} must be positive, not '{value}'.") },
                "--no-caching-cap-s" => o with { NoCachingCapSeconds = OptionValues.NonNegative(name, value) is > 0 and var ncap ? ncap : throw new ArgumentException($"{name} must be positive, not '{value}'.") },
                "--threads" => o with { Threads = OptionValues.Int(name, value, 1) },
                "--output" => value is "json" or "text" ? o with { Json = value == "json" } : throw new ArgumentException($"--output must be 'text' or 'json', not '{value}'."),
                "--jsonl" => o with { JsonLines = value },
                _ => throw new ArgumentException($"Unknown fault-table option '{name}'."),
            };
        }

        if (o.Hidden % 64 != 0)
        {
            throw new ArgumentException($"--hidden must be a multiple of 64 (the head size), not {o.Hidden}.");
        }

        if (o.Stages > o.Blocks)
        {
            throw new ArgumentException($"--stages ({o.Stages}) cannot exceed --blocks ({o.Blocks}).");
        }

        if (o.Lengths.Count == 0 || o.Rates.Count == 0 || o.Strategies.Count == 0)
        {
            throw new ArgumentException("--lengths, --rates and --strategies each need at least one value.");
        }

        return o;
    }

    /// <summary>The name the table and the command line use for <paramref name="strategy"/>.</summary>
    public static string Name(FaultStrategy strategy) => strategy switch
    {
        FaultStrategy.CachingWithRestarts => "restarts",
        FaultStrategy.NoCaching => "no-caching",
        FaultStrategy.Algorithm1 => "alg1",
        _ => throw new ArgumentOutOfRangeException(nameof(strategy), strategy, null),
    };

    private static string[] Split(string value) => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static FaultStrategy Strategy(string name, string value) => value switch
    {
        "restarts" => FaultStrategy.CachingWithRestarts,
        "no-caching" => FaultStrategy.NoCaching,
        "alg1" => FaultStrategy.Algorithm1,
        _ => throw new ArgumentException($"{name} takes restarts, no-caching and alg1, not '{value}'."),
    };

    private static double Rate(string name, string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value is >= 0 and < 1
            ? value
            : throw new ArgumentException($"{name} must list probabilities in [0, 1), not '{text}'.");
}
