using System.CommandLine;
using Petals.Discovery;
using Petals.Tensors;

namespace Petals.Cli.Commands;

/// <summary>
/// The weight-quantization flags: <c>--quant</c> (how blocks run in this process are quantized at load) and
/// <c>--require-quant</c> (the only quantization a client routes through).
/// </summary>
internal static class QuantizationOptions
{
    /// <summary>The names <c>--quant</c> accepts, for help and errors: <c>none|int8|nf4|q8_0|q4_k</c>.</summary>
    public static string KnownList => string.Join("|", WeightQuantization.Known);

    /// <summary><c>--quant</c>, described as applying to <paramref name="where"/>.</summary>
    public static Option<string?> Quant(string where) => new("--quant")
    {
        Description = $"How {where} quantize fp32/fp16/bf16 block weights at load: {KnownList} (default none; weights a GGUF file stores quantized keep their own format).",
    };

    /// <summary><c>--require-quant</c>.</summary>
    public static Option<string?> RequireQuant() => new("--require-quant")
    {
        Description = $"Route only through servers announcing exactly this weight quantization ({KnownList}, or a file's mix such as q4_k+q6_k), since quantized blocks give other outputs; default: any.",
    };

    /// <summary>The value of <c>--quant</c> (<paramref name="option"/> names the flag in the error); none when not given.</summary>
    /// <exception cref="ArgumentException">The value names no known quantization; the one-line message lists the known ones.</exception>
    public static WeightQuantization ParseQuant(string? text, string option = "--quant") =>
        text is null ? WeightQuantization.None
        : WeightQuantization.TryParse(text, out var value) ? value
        : throw new ArgumentException($"{option}: unknown weight quantization '{text}'; expected one of {string.Join(", ", WeightQuantization.Known)}.");

    /// <summary>
    /// The value of <c>--require-quant</c> in lower case, or null when not given: any quantization a server can announce
    /// (the known names, or a file's block types joined by '+').
    /// </summary>
    /// <exception cref="ArgumentException">The value could not be announced (empty, too long, other characters); the message says why.</exception>
    public static string? ParseRequired(string? text)
    {
        if (text is null)
        {
            return null;
        }

        var value = text.Trim().ToLowerInvariant();
        return AnnouncementLimits.IsValidQuantization(value, out var fault)
            ? value
            : throw new ArgumentException($"--require-quant: {fault} Servers announce one of {string.Join(", ", WeightQuantization.Known)} or a file's block types joined by '+' (q4_k+q6_k).");
    }

    /// <summary>
    /// One quantization per server from <c>petals swarm --quant</c>: one value for all, or a comma-separated list with one
    /// value per server.
    /// </summary>
    /// <exception cref="ArgumentException">A value is unknown, or the list's length is neither 1 nor <paramref name="servers"/>.</exception>
    public static WeightQuantization[] ParsePerServer(string? text, int servers)
    {
        if (text is null)
        {
            return [.. Enumerable.Repeat(WeightQuantization.None, servers)];
        }

        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 1 && parts.Length != servers)
        {
            throw new ArgumentException($"--quant: {parts.Length} values for {servers} servers; give one value for all or one per server (e.g. none,nf4,int8).");
        }

        var values = parts.Select(p => ParseQuant(p)).ToArray();
        return values.Length == servers ? values : [.. Enumerable.Repeat(values[0], servers)];
    }
}
