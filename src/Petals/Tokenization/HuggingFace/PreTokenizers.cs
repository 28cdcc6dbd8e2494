using System.Text.Json;
using System.Text.RegularExpressions;

namespace Petals.Tokenization.HuggingFace;

/// <summary>A piece of text being pre-tokenized; <see cref="AtStart"/> when it begins the original input.</summary>
internal readonly record struct Piece(string Text, bool AtStart);

/// <summary>A tokenizer.json pre-tokenizer: splits normalized text into words the model encodes separately.</summary>
internal abstract class PreTokenizer
{
    /// <summary>The GPT-2 split pattern used by ByteLevel when use_regex is true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Replaces the content of <paramref name="pieces"/> with its split; <paramref name="scratch"/> is a work list.</summary>
    public abstract void PreTokenize(List<Piece> pieces, List<Piece> scratch);

    public static PreTokenizer? Parse(JsonElement? element, string path, JsonFields f)
    {
        if (element is not { } e)
        {
            return null;
        }

        string type = f.RequiredString(e, "type", path);
        switch (type)
        {
            case "Sequence":
            {
                JsonElement items = f.RequiredArray(e, "pretokenizers", path);
                var list = new List<PreTokenizer>();
                int i = 0;
                foreach (JsonElement item in items.EnumerateArray())
                {
                    if (Parse(item, JsonFields.Index(path + ".pretokenizers", i++), f) is { } p)
                    {
                        list.Add(p);
                    }
                }

                return new SequencePreTokenizer([.. list]);
            }

            case "ByteLevel":
                return new ByteLevelPreTokenizer(
                    f.OptionalBool(e, "add_prefix_space", path, true),
                    f.OptionalBool(e, "use_regex", path, true) ? CreateRegex(Gpt2Pattern, path, f) : null);
            case "Split":
            {
                (string pattern, bool isRegex) = f.Pattern(e, "pattern", path);
                string regexText = isRegex ? pattern : Regex.Escape(pattern);
                string behaviorText = f.RequiredString(e, "behavior", path);
                SplitBehavior behavior = behaviorText switch
                {
                    "Removed" => SplitBehavior.Removed,
                    "Isolated" => SplitBehavior.Isolated,
                    "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
                    "MergedWithNext" => SplitBehavior.MergedWithNext,
                    "Contiguous" => SplitBehavior.Contiguous,
                    _ => throw f.Error(path + ".behavior", $"unknown split behavior '{behaviorText}'."),
                };
                return new SplitPreTokenizer(CreateRegex(regexText, path + ".pattern", f), behavior, f.OptionalBool(e, "invert", path, false));
            }

            case "Metaspace":
            {
                string replacement = f.RequiredString(e, "replacement", path);
                if (replacement.Length == 0)
                {
                    throw f.Error(path + ".replacement", "must not be empty.");
                }

                string scheme = f.OptionalString(e, "prepend_scheme", path)
                    ?? (f.OptionalBool(e, "add_prefix_space", path, true) ? "always" : "never");
                if (scheme is not ("always" or "first" or "never"))
                {
                    throw f.Error(path + ".prepend_scheme", $"unknown prepend scheme '{scheme}'.");
                }

                return new MetaspacePreTokenizer(replacement, scheme, f.OptionalBool(e, "split", path, true));
            }

            case "Digits":
                return new DigitsPreTokenizer(f.OptionalBool(e, "individual_digits", path, false));
            case "WhitespaceSplit":
                return new SplitPreTokenizer(CreateRegex(@"\s+", path, f), SplitBehavior.Removed, invert: false);
            case "Whitespace":
                return new SplitPreTokenizer(CreateRegex(@"\w+|[^\w\s]+", path, f), SplitBehavior.Removed, invert: true);
            default:
                throw f.Error(path + ".type", $"unsupported pre-tokenizer type '{type}'.");
        }
    }

    public static CodePointRegex CreateRegex(string pattern, string field, JsonFields f)
    {
        try
        {
            return new CodePointRegex(pattern);
        }
        catch (ArgumentException ex)
        {
            throw f.Error(field, $"invalid regular expression: {ex.Message}", ex);
        }
    }
}

internal enum SplitBehavior
{
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

internal sealed class SequencePreTokenizer(PreTokenizer[] items) : PreTokenizer
{
    public override void PreTokenize(List<Piece> pieces, List<Piece> scratch)
    {
        foreach (PreTokenizer p in items)
        {
            p.PreTokenize(pieces, scratch);
        }
    }
}

/// <summary>Splits every piece by a pattern, keeping or merging the delimiters as Hugging Face's SplitDelimiterBehavior does.</summary>
internal sealed class SplitPreTokenizer(CodePointRegex regex, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override void PreTokenize(List<Piece> pieces, List<Piece> scratch)
    {
        scratch.Clear();
        var matches = new List<(int Start, int Length)>();
        var spans = new List<(int Start, int End, bool IsMatch)>();
        foreach (Piece piece in pieces)
        {
            matches.Clear();
            spans.Clear();
            regex.Matches(piece.Text, matches);
            int last = 0;
            foreach ((int start, int length) in matches)
            {
                if (start > last)
                {
                    spans.Add((last, start, invert));
                }

                spans.Add((start, start + length, !invert));
                last = start + length;
            }

            if (last < piece.Text.Length)
            {
                spans.Add((last, piece.Text.Length, invert));
            }

            Emit(piece, spans, scratch);
        }

        pieces.Clear();
        pieces.AddRange(scratch);
    }

    private void Emit(Piece piece, List<(int Start, int End, bool IsMatch)> spans, List<Piece> output)
    {
        string text = piece.Text;
        void Add(int start, int end)
        {
            if (end > start)
            {
                output.Add(new Piece(text[start..end], piece.AtStart && start == 0));
            }
        }

        switch (behavior)
        {
            case SplitBehavior.Removed:
                foreach ((int s, int e, bool m) in spans)
                {
                    if (!m)
                    {
                        Add(s, e);
                    }
                }

                break;
            case SplitBehavior.Isolated:
                foreach ((int s, int e, _) in spans)
                {
                    Add(s, e);
                }

                break;
            case SplitBehavior.Contiguous:
            {
                int i = 0;
                while (i < spans.Count)
                {
                    int j = i;
                    while (j + 1 < spans.Count && spans[j + 1].IsMatch && spans[i].IsMatch)
                    {
                        j++;
                    }

                    Add(spans[i].Start, spans[j].End);
                    i = j + 1;
                }

                break;
            }

            case SplitBehavior.MergedWithPrevious:
            {
                int start = 0;
                foreach ((int s, int e, bool m) in spans)
                {
                    if (m)
                    {
                        Add(start, e);
                        start = e;
                    }
                }

                Add(start, text.Length);
                break;
            }

            case SplitBehavior.MergedWithNext:
            {
                int start = 0;
                foreach ((int s, int e, bool m) in spans)
                {
                    if (m)
                    {
                        Add(start, s);
                        start = s;
                    }
                }

                Add(start, text.Length);
                break;
            }
        }
    }
}

/// <summary>Maps every piece's UTF-8 bytes to GPT-2's printable alphabet, optionally splitting with the GPT-2 pattern first.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, CodePointRegex? regex) : PreTokenizer
{
    public override void PreTokenize(List<Piece> pieces, List<Piece> scratch)
    {
        scratch.Clear();
        var matches = new List<(int Start, int Length)>();
        foreach (Piece original in pieces)
        {
            Piece piece = original;
            if (addPrefixSpace && !piece.Text.StartsWith(' '))
            {
                piece = piece with { Text = " " + piece.Text };
            }

            if (regex is null)
            {
                scratch.Add(piece with { Text = ByteLevelAlphabet.Encode(piece.Text) });
                continue;
            }

            matches.Clear();
            regex.Matches(piece.Text, matches);
            int last = 0;
            foreach ((int start, int length) in matches)
            {
                if (start > last)
                {
                    scratch.Add(new Piece(ByteLevelAlphabet.Encode(piece.Text.AsSpan(last, start - last)), piece.AtStart && last == 0));
                }

                scratch.Add(new Piece(ByteLevelAlphabet.Encode(piece.Text.AsSpan(start, length)), piece.AtStart && start == 0));
                last = start + length;
            }

            if (last < piece.Text.Length)
            {
                scratch.Add(new Piece(ByteLevelAlphabet.Encode(piece.Text.AsSpan(last)), piece.AtStart && last == 0));
            }
        }

        pieces.Clear();
        pieces.AddRange(scratch);
    }
}

/// <summary>SentencePiece-style spaces: ' ' becomes the replacement character, prepended per scheme, split before each.</summary>
internal sealed class MetaspacePreTokenizer(string replacement, string prependScheme, bool split) : PreTokenizer
{
    public override void PreTokenize(List<Piece> pieces, List<Piece> scratch)
    {
        scratch.Clear();
        foreach (Piece piece in pieces)
        {
            string text = piece.Text.Replace(" ", replacement, StringComparison.Ordinal);
            bool prepend = prependScheme == "always" || (prependScheme == "first" && piece.AtStart);
            if (prepend && !text.StartsWith(replacement, StringComparison.Ordinal))
            {
                text = replacement + text;
            }

            if (!split)
            {
                scratch.Add(piece with { Text = text });
                continue;
            }

            int start = 0;
            int index = text.Length == 0 ? -1 : text.IndexOf(replacement, 1, StringComparison.Ordinal);
            while (index > 0)
            {
                if (index > start)
                {
                    scratch.Add(new Piece(text[start..index], piece.AtStart && start == 0));
                    start = index;
                }

                index = index + 1 < text.Length ? text.IndexOf(replacement, index + 1, StringComparison.Ordinal) : -1;
            }

            if (start < text.Length)
            {
                scratch.Add(new Piece(text[start..], piece.AtStart && start == 0));
            }
        }

        pieces.Clear();
        pieces.AddRange(scratch);
    }
}

/// <summary>Isolates digits: each digit alone, or each run of digits.</summary>
internal sealed class DigitsPreTokenizer(bool individual) : PreTokenizer
{
    public override void PreTokenize(List<Piece> pieces, List<Piece> scratch)
    {
        scratch.Clear();
        foreach (Piece piece in pieces)
        {
            string text = piece.Text;
            int i = 0;
            while (i < text.Length)
            {
                bool digit = char.IsDigit(text[i]);
                int j = i + 1;
                if (digit && !individual)
                {
                    while (j < text.Length && char.IsDigit(text[j]))
                    {
                        j++;
                    }
                }
                else if (!digit)
                {
                    while (j < text.Length && !char.IsDigit(text[j]))
                    {
                        j++;
                    }
                }

                scratch.Add(new Piece(text[i..j], piece.AtStart && i == 0));
                i = j;
            }
        }

        pieces.Clear();
        pieces.AddRange(scratch);
    }
}
