namespace Petals.Tokenization.HuggingFace;

/// <summary>An entry of tokenizer.json's added_tokens.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip, bool Normalized, bool SingleWord);

/// <summary>A segment of input text: either an added token or a run of ordinary text.</summary>
internal readonly record struct TextSegment(int Start, int Length, int TokenId)
{
    public bool IsToken => TokenId >= 0;
}

/// <summary>
/// Finds added tokens in text, leftmost-longest as Hugging Face's AddedVocabulary does, honouring single_word
/// (no word character on either side) and lstrip/rstrip (the match swallows adjacent whitespace).
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens
            .Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Splits <paramref name="text"/> into token and text segments (text segments are never empty).</summary>
    public void Split(string text, List<TextSegment> segments)
    {
        segments.Clear();
        int textStart = 0;
        int i = 0;
        while (i < text.Length)
        {
            if (!_byFirstChar.TryGetValue(text[i], out AddedToken[]? candidates) || Match(text, i, candidates) is not { } token)
            {
                i++;
                continue;
            }

            int start = i;
            int end = i + token.Content.Length;
            if (token.LStrip)
            {
                while (start > textStart && char.IsWhiteSpace(text[start - 1]))
                {
                    start--;
                }
            }

            if (token.RStrip)
            {
                while (end < text.Length && char.IsWhiteSpace(text[end]))
                {
                    end++;
                }
            }

            if (start > textStart)
            {
                segments.Add(new TextSegment(textStart, start - textStart, -1));
            }

            segments.Add(new TextSegment(start, end - start, token.Id));
            textStart = end;
            i = end;
        }

        if (textStart < text.Length)
        {
            segments.Add(new TextSegment(textStart, text.Length - textStart, -1));
        }
    }

    private static AddedToken? Match(string text, int position, AddedToken[] candidates)
    {
        foreach (AddedToken t in candidates)
        {
            if (position + t.Content.Length > text.Length || string.CompareOrdinal(text, position, t.Content, 0, t.Content.Length) != 0)
            {
                continue;
            }

            if (t.SingleWord)
            {
                int end = position + t.Content.Length;
                if ((position > 0 && IsWordChar(text[position - 1])) || (end < text.Length && IsWordChar(text[end])))
                {
                    continue;
                }
            }

            return t;
        }

        return null;
    }

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';
}
