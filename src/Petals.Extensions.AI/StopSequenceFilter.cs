using System.Text;

namespace Petals.Extensions.AI;

/// <summary>
/// Cuts generated text at the first of a set of stop sequences, holding back any tail that could still become one, so
/// that text a stop sequence later claims is never emitted. Not thread-safe: one per generation.
/// </summary>
internal sealed class StopSequenceFilter
{
    private readonly IReadOnlyList<string> _stops;
    private readonly int _longest;
    private readonly StringBuilder _text = new();
    private int _emitted;

    /// <summary>A filter for <paramref name="stops"/> (non-empty strings; none at all passes everything through).</summary>
    public StopSequenceFilter(IReadOnlyList<string> stops)
    {
        _stops = stops;
        foreach (var stop in stops)
        {
            _longest = Math.Max(_longest, stop.Length);
        }
    }

    /// <summary>Whether a stop sequence was found; nothing is emitted after it.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds <paramref name="piece"/> and returns the text now safe to emit (possibly empty).</summary>
    public string Append(string piece)
    {
        if (Stopped || piece.Length == 0)
        {
            return string.Empty;
        }

        if (_stops.Count == 0)
        {
            _emitted += piece.Length;
            return piece;
        }

        var before = _text.Length;
        _text.Append(piece);
        var text = _text.ToString();

        // A stop sequence not found before must end inside the new piece.
        var from = Math.Max(0, before - _longest + 1);
        var first = -1;
        foreach (var stop in _stops)
        {
            var at = text.IndexOf(stop, from, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
            {
                first = at;
            }
        }

        if (first >= 0)
        {
            Stopped = true;
            return Take(text, first);
        }

        // Hold back the longest tail that is a proper prefix of some stop sequence.
        var hold = 0;
        foreach (var stop in _stops)
        {
            for (var n = Math.Min(stop.Length - 1, text.Length - _emitted); n > hold; n--)
            {
                if (text.AsSpan(text.Length - n).SequenceEqual(stop.AsSpan(0, n)))
                {
                    hold = n;
                    break;
                }
            }
        }

        return Take(text, text.Length - hold);
    }

    /// <summary>The text held back, once generation ended without a stop sequence.</summary>
    public string Flush() => Stopped || _stops.Count == 0 ? string.Empty : Take(_text.ToString(), _text.Length);

    private string Take(string text, int end)
    {
        if (end <= _emitted)
        {
            return string.Empty;
        }

        var result = text[_emitted..end];
        _emitted = end;
        return result;
    }
}
