using System.Globalization;

namespace Petals.Models;

/// <summary>A half-open range <c>[Start, End)</c> of transformer block indices.</summary>
/// <remarks>Immutable and thread-safe.</remarks>
public readonly record struct BlockRange
{
    /// <summary>Creates a range of blocks <c>[start, end)</c>.</summary>
    /// <param name="start">The first block index (inclusive), at least 0.</param>
    /// <param name="end">The block index past the last one (exclusive), greater than <paramref name="start"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="start"/> is negative or <paramref name="end"/> is not greater than it.</exception>
    public BlockRange(int start, int end)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(end, start);
        Start = start;
        End = end;
    }

    /// <summary>The first block index (inclusive).</summary>
    public int Start { get; }

    /// <summary>The block index past the last one (exclusive).</summary>
    public int End { get; }

    /// <summary>The number of blocks in the range.</summary>
    public int Count => End - Start;

    /// <summary>Whether <paramref name="block"/> lies in the range.</summary>
    /// <param name="block">A block index.</param>
    /// <returns><see langword="true"/> when <c>Start &lt;= block &lt; End</c>.</returns>
    public bool Contains(int block) => block >= Start && block < End;

    /// <summary>Parses <c>"START:END"</c> (end exclusive).</summary>
    /// <param name="text">The text to parse.</param>
    /// <returns>The range.</returns>
    /// <exception cref="FormatException">When the text is not two integers separated by a colon with <c>0 &lt;= START &lt; END</c>.</exception>
    public static BlockRange Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0
            || !int.TryParse(text.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var start)
            || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var end)
            || end <= start)
        {
            throw new FormatException($"Block range '{text}' is not of the form START:END with 0 <= START < END.");
        }

        return new BlockRange(start, end);
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Start}:{End}");
}
