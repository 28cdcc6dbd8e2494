using System.Diagnostics.CodeAnalysis;

namespace Petals.Tensors;

/// <summary>
/// How a server quantizes fp32/fp16/bf16 block weights when it loads them (<c>petals serve --quant</c>): a string-backed
/// value set (compared ordinal, case-insensitive) so that providers can add their own.
/// </summary>
/// <remarks>
/// Weights that a file already stores quantized (GGUF Q8_0, Q4_K, …) are served in their own format whatever this says.
/// </remarks>
public readonly struct WeightQuantization : IEquatable<WeightQuantization>
{
    private readonly string? _value;

    /// <summary>Creates a value; it is stored in lower case.</summary>
    /// <param name="value">The name, e.g. <c>"nf4"</c>.</param>
    /// <exception cref="ArgumentException">When <paramref name="value"/> is empty or whitespace.</exception>
    public WeightQuantization(string value)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(value);
        _value = value.Trim().ToLowerInvariant();
    }

    /// <summary>Weights are kept in the type they are stored in.</summary>
    public static WeightQuantization None { get; } = new("none");

    /// <summary>Signed 8-bit weights with one absmax scale per output channel (row), in the style of bitsandbytes' LLM.int8 weights.</summary>
    public static WeightQuantization PerChannelInt8 { get; } = new("int8");

    /// <summary>QLoRA's 4-bit NormalFloat in blocks of 64 with an fp16 absmax scale per block (<see cref="TensorDType.NF4"/>).</summary>
    public static WeightQuantization Nf4 { get; } = new("nf4");

    /// <summary>GGML Q8_0 (<see cref="TensorDType.Q8_0"/>).</summary>
    public static WeightQuantization Q8_0 { get; } = new("q8_0");

    /// <summary>GGML Q4_K (<see cref="TensorDType.Q4_K"/>).</summary>
    public static WeightQuantization Q4_K { get; } = new("q4_k");

    /// <summary>The values this library knows, in the order the CLI lists them.</summary>
    public static IReadOnlyList<WeightQuantization> Known { get; } = [None, PerChannelInt8, Nf4, Q8_0, Q4_K];

    /// <summary>The name (<c>"none"</c> for the default value).</summary>
    public string Value => _value ?? "none";

    /// <summary>Parses one of <see cref="Known"/>.</summary>
    /// <param name="text">The name, any case.</param>
    /// <returns>The value.</returns>
    /// <exception cref="ArgumentException">When <paramref name="text"/> names no known quantization; the message lists the known ones.</exception>
    public static WeightQuantization Parse(string text)
    {
        if (TryParse(text, out var result))
        {
            return result;
        }

        throw new ArgumentException($"Unknown weight quantization '{text}'; expected one of {string.Join(", ", Known)}.", nameof(text));
    }

    /// <summary>Parses one of <see cref="Known"/>.</summary>
    /// <param name="text">The name, any case.</param>
    /// <param name="result">The value when known.</param>
    /// <returns>Whether <paramref name="text"/> names a known quantization.</returns>
    public static bool TryParse([NotNullWhen(true)] string? text, out WeightQuantization result)
    {
        foreach (var known in Known)
        {
            if (string.Equals(known.Value, text?.Trim(), StringComparison.OrdinalIgnoreCase))
            {
                result = known;
                return true;
            }
        }

        result = default;
        return false;
    }

    /// <inheritdoc />
    public bool Equals(WeightQuantization other) => string.Equals(Value, other.Value, StringComparison.Ordinal);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is WeightQuantization other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Value);

    /// <inheritdoc />
    public override string ToString() => Value;

    /// <summary>Equality.</summary>
    /// <param name="left">A value.</param>
    /// <param name="right">Another value.</param>
    /// <returns>Whether they name the same quantization.</returns>
    public static bool operator ==(WeightQuantization left, WeightQuantization right) => left.Equals(right);

    /// <summary>Inequality.</summary>
    /// <param name="left">A value.</param>
    /// <param name="right">Another value.</param>
    /// <returns>Whether they name different quantizations.</returns>
    public static bool operator !=(WeightQuantization left, WeightQuantization right) => !left.Equals(right);
}
