using System.Globalization;

namespace Petals.Benchmarks;

/// <summary>Command-line options of <c>block</c>, <c>crosscheck</c> and <c>membw</c>.</summary>
internal sealed class BlockOptions
{
    public string Shape { get; set; } = "llama2-7b";

    public string DType { get; set; } = "f32";

    public string Mode { get; set; } = "decode";

    public int Position { get; set; } = 128;

    public int Tokens { get; set; } = 128;

    public int Threads { get; set; } = 2;

    public int Warmup { get; set; } = 2;

    public int Iterations { get; set; } = 10;

    public ulong Seed { get; set; } = 1234;

    /// <summary>Bytes per cached key/value element assumed in the GB/s figure (the CPU executor keeps an fp32 cache).</summary>
    public int KvBytes { get; set; } = 4;

    public string Output { get; set; } = "text";

    public string Backend { get; set; } = "cpu";

    public string? Dir { get; set; }

    /// <summary>Cases from <c>--cases decode:128,prefill:128</c>; when absent, the one case of --mode/--position/--tokens.</summary>
    public List<BlockCase> Cases { get; } = [];

    /// <summary>The CPU executor's native BLAS mode for large fp32 products: auto (its default), never, always.</summary>
    public string NativeBlas { get; set; } = "auto";

    public static BlockOptions Parse(ReadOnlySpan<string> args)
    {
        var o = new BlockOptions();
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"Option '{name}' needs a value.");
            }

            var value = args[++i];
            switch (name)
            {
                case "--shape": o.Shape = OneOf(name, value, BlockShapes.Names); break;
                case "--dtype": o.DType = OneOf(name, value, ["f32", "bf16"]); break;
                case "--mode": o.Mode = OneOf(name, value, ["decode", "prefill"]); break;
                case "--position": o.Position = Int(name, value, 0); break;
                case "--tokens": o.Tokens = Int(name, value, 1); break;
                case "--threads": o.Threads = Int(name, value, 1); break;
                case "--warmup": o.Warmup = Int(name, value, 0); break;
                case "--iterations": o.Iterations = Int(name, value, 1); break;
                case "--seed": o.Seed = (ulong)Int(name, value, 0); break;
                case "--kv-bytes": o.KvBytes = Int(name, value, 1); break;
                case "--output": o.Output = OneOf(name, value, ["text", "json"]); break;
                case "--backend": o.Backend = value; break;
                case "--dir": o.Dir = value; break;
                case "--cases": o.Cases.AddRange(value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(BlockCase.Parse)); break;
                case "--native-blas": o.NativeBlas = OneOf(name, value, ["auto", "never", "always"]); break;
                default: throw new ArgumentException($"Unknown option '{name}'.");
            }
        }

        if (o.Cases.Count == 0)
        {
            o.Cases.Add(o.Mode == "decode" ? new BlockCase(true, o.Position, 1) : new BlockCase(false, 0, o.Tokens));
        }

        return o;
    }

    private static string OneOf(string name, string value, string[] allowed) =>
        Array.IndexOf(allowed, value) >= 0 ? value : throw new ArgumentException($"Option {name}: '{value}' is not one of {string.Join(", ", allowed)}.");

    private static int Int(string name, string value, int min) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v >= min
            ? v
            : throw new ArgumentException($"Option {name}: '{value}' is not an integer >= {min}.");
}
