using System.Globalization;

namespace Petals.Benchmarks;

/// <summary>One timed configuration: a one-token decode at a cache position, or a prefill of some tokens from position 0.</summary>
/// <param name="Decode">Whether this is a decode step (else a prefill).</param>
/// <param name="Position">Cache length before the step (0 for prefill).</param>
/// <param name="Tokens">New tokens per step (1 for decode).</param>
internal sealed record BlockCase(bool Decode, int Position, int Tokens)
{
    public string Mode => Decode ? "decode" : "prefill";

    /// <summary>Parses <c>decode:POSITION</c> or <c>prefill:TOKENS</c>.</summary>
    public static BlockCase Parse(string text)
    {
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon > 0 && int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            switch (text[..colon])
            {
                case "decode" when n >= 0:
                    return new BlockCase(true, n, 1);
                case "prefill" when n >= 1:
                    return new BlockCase(false, 0, n);
            }
        }

        throw new ArgumentException($"Case '{text}' is not decode:POSITION (>= 0) or prefill:TOKENS (>= 1).");
    }

    public override string ToString() => Decode
        ? string.Create(CultureInfo.InvariantCulture, $"decode:{Position}")
        : string.Create(CultureInfo.InvariantCulture, $"prefill:{Tokens}");
}
