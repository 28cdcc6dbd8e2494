using System.Globalization;

namespace Petals.Benchmarks.LlamaCpp;

/// <summary>The settings of <c>llama-compare</c> (and <c>model-files</c>, which shares the directory, shapes, formats and block count).</summary>
internal sealed record LlamaCompareOptions
{
    public string Directory { get; init; } = "/work/bench-models";

    public IReadOnlyList<CompareShape> Shapes { get; init; } = [CompareShape.Llama2_7B, CompareShape.Llama3_8B];

    public IReadOnlyList<string> Formats { get; init; } = CompareModels.Formats;

    public int Blocks { get; init; } = 4;

    public int Threads { get; init; } = 2;

    /// <summary>Alternating rounds: llama.cpp then ours in even rounds, ours then llama.cpp in odd ones.</summary>
    public int Rounds { get; init; } = 3;

    /// <summary>Timed single-token steps per decode case per round (the position is reset before each).</summary>
    public int Steps { get; init; } = 8;

    /// <summary>Untimed steps before each decode case of each round (the other side's threads settle meanwhile).</summary>
    public int Warmup { get; init; } = 2;

    public IReadOnlyList<int> Positions { get; init; } = [16, 1024];

    /// <summary>Tokens of the timed prefill (0: no prefill case).</summary>
    public int Prefill { get; init; } = 128;

    /// <summary>llama.cpp's context length (positions); must hold the largest position plus the decode step.</summary>
    public int Context { get; init; } = 1280;

    public string Results { get; init; } = "bench/results";

    /// <summary>Which sides run: both, llama or ours.</summary>
    public string Impl { get; init; } = "both";

    public string? LlamaNative { get; init; }

    public ulong Seed { get; init; } = 1;

    /// <summary>model-files: standard deviation of the Gaussian weights.</summary>
    public float Std { get; init; } = 0.02f;

    /// <summary>model-files: rewrite files that exist.</summary>
    public bool Force { get; init; }

    public bool Plot { get; init; } = true;

    public static LlamaCompareOptions Parse(ReadOnlySpan<string> args)
    {
        var o = new LlamaCompareOptions();
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (name is "--force" or "--no-plot")
            {
                o = name == "--force" ? o with { Force = true } : o with { Plot = false };
                continue;
            }

            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"{name} needs a value.");
            }

            var v = args[++i];
            o = name switch
            {
                "--dir" => o with { Directory = v },
                "--shapes" => o with { Shapes = List(v).Select(CompareShape.Get).ToArray() },
                "--formats" => o with { Formats = List(v).Select(CheckFormat).ToArray() },
                "--blocks" => o with { Blocks = OptionValues.Int(name, v, 1) },
                "--threads" => o with { Threads = OptionValues.Int(name, v, 1) },
                "--rounds" => o with { Rounds = OptionValues.Int(name, v, 1) },
                "--steps" => o with { Steps = OptionValues.Int(name, v, 1) },
                "--warmup" => o with { Warmup = OptionValues.Int(name, v, 0) },
                "--positions" => o with { Positions = List(v).Select(p => OptionValues.Int(name, p, 1)).Distinct().Order().ToArray() },
                "--prefill" => o with { Prefill = OptionValues.Int(name, v, 0) },
                "--ctx" => o with { Context = OptionValues.Int(name, v, 16) },
                "--results" => o with { Results = v },
                "--impl" => o with { Impl = v is "both" or "llama" or "ours" ? v : throw new ArgumentException($"--impl must be both, llama or ours, not '{v}'.") },
                "--llama-native" => o with { LlamaNative = v },
                "--seed" => o with { Seed = (ulong)OptionValues.Int(name, v, 0) },
                "--std" => o with { Std = (float)OptionValues.Positive(name, v) },
                _ => throw new ArgumentException($"Unknown option '{name}'."),
            };
        }

        var longest = Math.Max(o.Positions.Count == 0 ? 0 : o.Positions.Max() + 1, o.Prefill);
        if (longest > o.Context)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--ctx {o.Context} cannot hold position {longest - 1}; give --ctx of at least {longest}."));
        }

        return o;
    }

    private static string[] List(string v) => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static string CheckFormat(string f) =>
        Array.IndexOf(CompareModels.Formats, f) >= 0 ? f : throw new ArgumentException($"--formats: unknown format '{f}' ({string.Join(", ", CompareModels.Formats)}).");
}
