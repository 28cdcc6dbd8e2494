using System.Globalization;

namespace Petals.Benchmarks;

/// <summary>
/// One timed configuration: a one-token decode at a cache position, a prefill of some tokens from position 0, or the
/// backward pass of a stateless forward over some tokens (<see cref="Petals.Execution.IBlockExecutor.Backward"/>: forward
/// recomputed inside, input gradients only).
/// </summary>
/// <param name="Decode">Whether this is a decode step (else a prefill or a backward pass).</param>
/// <param name="Position">Cache length before the step (0 for prefill and backward).</param>
/// <param name="Tokens">New tokens per step (1 for decode).</param>
/// <param name="Backward">Whether this is a backward pass.</param>
internal sealed record BlockCase(bool Decode, int Position, int Tokens, bool Backward = false)
{
    public string Mode => Backward ? "backward" : Decode ? "decode" : "prefill";

    /// <summary>Parses <c>decode:POSITION</c>, <c>prefill:TOKENS</c> or <c>backward:TOKENS</c>.</summary>
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
                case "backward" when n >= 1:
                    return new BlockCase(false, 0, n, Backward: true);
            }
        }

        throw new ArgumentException($"Case '{text}' is not decode:POSITION (>= 0), prefill:TOKENS or backward:TOKENS (>= 1).");
    }

    public override string ToString() => Decode
        ? string.Create(CultureInfo.InvariantCulture, $"decode:{Position}")
        : string.Create(CultureInfo.InvariantCulture, $"{Mode}:{Tokens}");
}
