using System.Globalization;
using Petals.Models;

namespace Petals.Benchmarks.Chaos;

/// <summary>The settings of <c>chaos</c>: the swarm, the generation, and how often a server is killed.</summary>
internal sealed record ChaosOptions
{
    /// <summary>The default spans: any one of them may die and the other four still cover the five blocks of stories260K.</summary>
    public static readonly IReadOnlyList<BlockRange> DefaultSpans = [new(0, 3), new(0, 2), new(2, 5), new(1, 4), new(3, 5)];

    /// <summary>The model every server and the client load (a .gguf file or a Hugging Face directory).</summary>
    public required string Model { get; init; }

    /// <summary>One server process per span; the spans must cover the model with any single one removed.</summary>
    public IReadOnlyList<BlockRange> Spans { get; init; } = DefaultSpans;

    /// <summary>The prompt text.</summary>
    public string Prompt { get; init; } = "Once upon a time";

    /// <summary>Tokens to generate greedily (stop tokens do not end the generation, so it is always this many).</summary>
    public int NewTokens { get; init; } = 200;

    /// <summary>A server of the active chain is killed after every this many generated tokens (never after the last).</summary>
    public int KillEvery { get; init; } = 10;

    /// <summary>The most kills (0: no limit beyond <see cref="NewTokens"/> / <see cref="KillEvery"/>).</summary>
    public int MaxKills { get; init; }

    /// <summary>Seeds the choice of the server to kill among those of the active chain.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>CPU threads of each server.</summary>
    public int ServerThreads { get; init; } = 1;

    /// <summary>
    /// Seconds between a server's republications of its announcement (it expires after three): short, so that killed
    /// servers leave the DHT soon and restarted ones are found quickly.
    /// </summary>
    public double AnnounceIntervalSeconds { get; init; } = 1;

    /// <summary>How long a server may take to start and be announced online, and the bound on every other wait.</summary>
    public TimeSpan StartupTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// Whether every server process runs a short session before it may be killed or take a span over, as servers that
    /// have been up for a while have (<c>--cold</c> turns it off: replacements then pay their runtime's first steps).
    /// </summary>
    public bool WarmUp { get; init; } = true;

    /// <summary>Where the JSON lines report goes (<c>chaos-STAMP.jsonl</c>); null writes none.</summary>
    public string? ResultsDirectory { get; init; }

    /// <summary>Whether the summary is printed as one JSON line instead of a table.</summary>
    public bool Json { get; init; }

    /// <summary>
    /// The client's output-check rate (issue 12; <c>--verify-rate</c>): with it on, a run also fails when any check
    /// failed, since every server is honest (kills are no lies). Default 0 (off).
    /// </summary>
    public double VerifyRate { get; init; }

    /// <summary>How many kills the run makes: one after every <see cref="KillEvery"/> tokens before the last, at most <see cref="MaxKills"/>.</summary>
    public int PlannedKills
    {
        get
        {
            var kills = (NewTokens - 1) / KillEvery;
            return MaxKills > 0 ? Math.Min(kills, MaxKills) : kills;
        }
    }

    /// <summary>Parses <c>chaos</c>'s arguments.</summary>
    /// <exception cref="ArgumentException">When an option is unknown, lacks its value, or has a bad one; the message names it.</exception>
    public static ChaosOptions Parse(ReadOnlySpan<string> args)
    {
        string? model = null;
        var o = new ChaosOptions { Model = string.Empty };
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (name is "--json" or "--cold")
            {
                o = name == "--json" ? o with { Json = true } : o with { WarmUp = false };
                continue;
            }

            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"{name} needs a value.");
            }

            var value = args[++i];
            switch (name)
            {
                case "--model": model = value; break;
                case "--spans": o = o with { Spans = ParseSpans(value) }; break;
                case "--prompt": o = o with { Prompt = value }; break;
                case "--new-tokens": o = o with { NewTokens = Int(name, value, 1) }; break;
                case "--kill-every": o = o with { KillEvery = Int(name, value, 1) }; break;
                case "--max-kills": o = o with { MaxKills = Int(name, value, 0) }; break;
                case "--seed": o = o with { Seed = Int(name, value, 0) }; break;
                case "--threads": o = o with { ServerThreads = Int(name, value, 1) }; break;
                case "--announce-interval": o = o with { AnnounceIntervalSeconds = Seconds(name, value) }; break;
                case "--startup-timeout": o = o with { StartupTimeout = TimeSpan.FromSeconds(Seconds(name, value)) }; break;
                case "--results": o = o with { ResultsDirectory = value }; break;
                case "--verify-rate":
                    o = o with
                    {
                        VerifyRate = double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var rate) && rate is >= 0 and <= 1
                            ? rate
                            : throw new ArgumentException($"--verify-rate must be between 0 and 1, not '{value}'."),
                    };
                    break;
                default: throw new ArgumentException($"Unknown option '{name}'.");
            }
        }

        return o with { Model = model ?? throw new ArgumentException("--model is required.") };
    }

    /// <summary>Parses a comma-separated list of spans, e.g. <c>0:3,0:2,2:5</c>.</summary>
    /// <exception cref="ArgumentException">When the list is empty or a span does not parse.</exception>
    public static IReadOnlyList<BlockRange> ParseSpans(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0)
        {
            throw new ArgumentException("--spans names no span.");
        }

        return [.. parts.Select(part =>
        {
            try
            {
                return BlockRange.Parse(part);
            }
            catch (FormatException e)
            {
                throw new ArgumentException($"--spans: '{part}' is not a span START:END ({e.Message})", e);
            }
        })];
    }

    /// <summary>
    /// Checks the counts and times, and the spans against a model of <paramref name="blockCount"/> blocks: each within the
    /// model, at least two, and every block still covered when any single server is gone.
    /// </summary>
    /// <exception cref="ArgumentException">Naming the value out of range, the span past the model, or the server whose loss leaves blocks uncovered.</exception>
    public void Validate(int blockCount)
    {
        foreach (var (name, value) in new (string, int)[] { ("--new-tokens", NewTokens), ("--kill-every", KillEvery), ("--threads", ServerThreads) })
        {
            if (value < 1)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{name} must be at least 1, not {value}."));
            }
        }

        if (MaxKills < 0 || !(AnnounceIntervalSeconds > 0) || !double.IsFinite(AnnounceIntervalSeconds) || StartupTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"--max-kills ({MaxKills}) must not be negative, --announce-interval ({AnnounceIntervalSeconds} s) and --startup-timeout ({StartupTimeout.TotalSeconds} s) must be positive."));
        }

        if (Spans.Count < 2)
        {
            throw new ArgumentException("--spans: a chaos run needs at least two servers.");
        }

        foreach (var span in Spans)
        {
            if (span.Count <= 0 || span.End > blockCount)
            {
                throw new ArgumentException($"--spans: {span} is not a non-empty span within the model's {blockCount} blocks.");
            }
        }

        for (var i = 0; i < Spans.Count; i++)
        {
            if (FirstUncovered(Spans.Where((_, j) => j != i), blockCount) is { } hole)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                    $"--spans: without server {i + 1} ({Spans[i]}) block {hole} is served by nobody; every block needs two servers."));
            }
        }
    }

    /// <summary>The first block of <c>[0, blockCount)</c> that none of <paramref name="spans"/> covers, or null when all are.</summary>
    public static int? FirstUncovered(IEnumerable<BlockRange> spans, int blockCount)
    {
        var covered = new bool[blockCount];
        foreach (var span in spans)
        {
            for (var b = Math.Max(0, span.Start); b < Math.Min(blockCount, span.End); b++)
            {
                covered[b] = true;
            }
        }

        var hole = Array.IndexOf(covered, false);
        return hole < 0 ? null : hole;
    }

    private static int Int(string name, string value, int min) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v >= min
            ? v
            : throw new ArgumentException($"{name}: '{value}' is not an integer >= {min}.");

    private static double Seconds(string name, string value) =>
        double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v > 0 && double.IsFinite(v)
            ? v
            : throw new ArgumentException($"{name}: '{value}' is not a positive number of seconds.");
}
