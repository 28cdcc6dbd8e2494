namespace Petals.Tokenization;

/// <summary>
/// Streams the output of any id-list decoder. It decodes a small window of recent ids twice (without and with
/// the new id) and returns the text the new id adds, holding it back while it ends in U+FFFD (an incomplete
/// UTF-8 character). Decoders whose first token is treated specially (a stripped leading space) see the same
/// first token in both decodes, so the pieces concatenate to the decode of all ids.
/// </summary>
internal sealed class StreamingDecoder : IStreamingDecoder
{
    private readonly Func<int[], int, int, bool, string> _decode;
    private readonly Func<int, bool> _isValid;
    private readonly bool _skipSpecialTokens;
    private int[] _ids = new int[16];
    private int _count;
    private int _prefixIndex;
    private int _readIndex;
    private string _prefixText = string.Empty;
    private bool _started;

    /// <param name="decode">Decodes ids[start..start+count) with the given skip flag.</param>
    /// <param name="isValid">Whether an id is inside the vocabulary.</param>
    /// <param name="skipSpecialTokens">The skip flag passed to <paramref name="decode"/>.</param>
    public StreamingDecoder(Func<int[], int, int, bool, string> decode, Func<int, bool> isValid, bool skipSpecialTokens)
    {
        _decode = decode;
        _isValid = isValid;
        _skipSpecialTokens = skipSpecialTokens;
    }

    public string Append(int id)
    {
        if (!_isValid(id))
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, "The id is outside the vocabulary.");
        }

        if (_count == _ids.Length)
        {
            Array.Resize(ref _ids, _ids.Length * 2);
        }

        _ids[_count++] = id;
        string text = DecodeWindow(_prefixIndex, _count);
        if (text.Length > _prefixText.Length && text.StartsWith(_prefixText, StringComparison.Ordinal) && !text.EndsWith('\uFFFD'))
        {
            string piece = text[_prefixText.Length..];
            _started = true;
            _prefixIndex = _readIndex;
            _readIndex = _count;
            Compact();
            _prefixText = DecodeWindow(_prefixIndex, _readIndex);
            return piece;
        }

        return string.Empty;
    }

    public string Flush()
    {
        string text = DecodeWindow(_prefixIndex, _count);
        string piece = text.StartsWith(_prefixText, StringComparison.Ordinal) ? text[_prefixText.Length..] : text;
        _count = 0;
        _prefixIndex = 0;
        _readIndex = 0;
        _prefixText = string.Empty;
        _started = false;
        return piece;
    }

    private string DecodeWindow(int start, int end) => _decode(_ids, start, end - start, _skipSpecialTokens);

    private void Compact()
    {
        // Keep only the ids from the prefix window on, so memory stays bounded on long streams.
        if (_prefixIndex > 64 && _started)
        {
            int shift = _prefixIndex;
            Array.Copy(_ids, shift, _ids, 0, _count - shift);
            _count -= shift;
            _prefixIndex = 0;
            _readIndex -= shift;
        }
    }
}
