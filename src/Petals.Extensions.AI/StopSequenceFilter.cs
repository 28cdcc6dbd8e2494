namespace Petals.Extensions.AI;

/// <summary>
/// Cuts generated text at the first of a set of stop sequences, holding back any tail that could still become one, so
/// that text a stop sequence later claims is never emitted. Not thread-safe: one per generation.
/// </summary>
/// <remarks>
/// Only the held-back tail is ever searched: a match cannot start in text already emitted, because any suffix that is
/// the start of a stop sequence is held back. Each piece costs its own length plus the longest stop sequence's.
/// </remarks>
internal sealed class StopSequenceFilter
{
    private readonly IReadOnlyList<string> _stops;
    private string _pending = string.Empty;

    /// <summary>A filter for <paramref name="stops"/> (non-empty strings; none at all passes everything through).</summary>
    public StopSequenceFilter(IReadOnlyList<string> stops) => _stops = stops;

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
            return piece;
        }

        var text = _pending + piece;
        var first = -1;
        foreach (var stop in _stops)
        {
            var at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
            {
                first = at;
            }
        }

        if (first >= 0)
        {
            Stopped = true;
            _pending = string.Empty;
            return text[..first];
        }

        // Hold back the longest tail that is a proper prefix of some stop sequence.
        var hold = 0;
        foreach (var stop in _stops)
        {
            for (var n = Math.Min(stop.Length - 1, text.Length); n > hold; n--)
            {
                if (text.AsSpan(text.Length - n).SequenceEqual(stop.AsSpan(0, n)))
                {
                    hold = n;
                    break;
                }
            }
        }

        _pending = text[^hold..];
        return text[..^hold];
    }

    /// <summary>The text held back, once generation ended without a stop sequence.</summary>
    public string Flush()
    {
        var rest = _pending;
        _pending = string.Empty;
        return rest;
    }
}
