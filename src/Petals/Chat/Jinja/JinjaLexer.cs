using System.Globalization;
using System.Text;

namespace Petals.Chat.Jinja;

/// <summary>The kinds of tokens of the Jinja subset (the same split as @huggingface/jinja's lexer).</summary>
internal enum JinjaTokenKind
{
    Text,
    NumericLiteral,
    StringLiteral,
    Identifier,
    Equals,
    OpenParen,
    CloseParen,
    OpenStatement,
    CloseStatement,
    OpenExpression,
    CloseExpression,
    OpenSquareBracket,
    CloseSquareBracket,
    OpenCurlyBracket,
    CloseCurlyBracket,
    Comma,
    Dot,
    Colon,
    Pipe,
    AdditiveOperator,
    MultiplicativeOperator,
    PowerOperator,
    ComparisonOperator,
    UnaryOperator,
    Comment,
}

/// <summary>One token; <see cref="Offset"/> is its start in the original template source.</summary>
internal readonly record struct JinjaToken(JinjaTokenKind Kind, string Value, int Offset);

/// <summary>
/// Splits a template into tokens the way @huggingface/jinja does with <c>trim_blocks</c> and <c>lstrip_blocks</c> on (the
/// settings Hugging Face applies chat templates with): one trailing line feed of the template is dropped, the spaces and
/// tabs before a block or comment tag at the start of a line go, the line feed after a block or comment tag goes,
/// <c>-</c> inside a tag strips the whitespace on that side, and <c>{% generation %}</c> markers are removed.
/// </summary>
internal static class JinjaLexer
{
    private static readonly (string Sequence, JinjaTokenKind Kind)[] Rules =
    [
        ("{%", JinjaTokenKind.OpenStatement),
        ("%}", JinjaTokenKind.CloseStatement),
        ("{{", JinjaTokenKind.OpenExpression),
        ("}}", JinjaTokenKind.CloseExpression),
        ("(", JinjaTokenKind.OpenParen),
        (")", JinjaTokenKind.CloseParen),
        ("{", JinjaTokenKind.OpenCurlyBracket),
        ("}", JinjaTokenKind.CloseCurlyBracket),
        ("[", JinjaTokenKind.OpenSquareBracket),
        ("]", JinjaTokenKind.CloseSquareBracket),
        (",", JinjaTokenKind.Comma),
        (".", JinjaTokenKind.Dot),
        (":", JinjaTokenKind.Colon),
        ("|", JinjaTokenKind.Pipe),
        ("<=", JinjaTokenKind.ComparisonOperator),
        (">=", JinjaTokenKind.ComparisonOperator),
        ("==", JinjaTokenKind.ComparisonOperator),
        ("!=", JinjaTokenKind.ComparisonOperator),
        ("<", JinjaTokenKind.ComparisonOperator),
        (">", JinjaTokenKind.ComparisonOperator),
        ("+", JinjaTokenKind.AdditiveOperator),
        ("-", JinjaTokenKind.AdditiveOperator),
        ("~", JinjaTokenKind.AdditiveOperator),
        ("**", JinjaTokenKind.PowerOperator),
        ("*", JinjaTokenKind.MultiplicativeOperator),
        ("//", JinjaTokenKind.MultiplicativeOperator),
        ("/", JinjaTokenKind.MultiplicativeOperator),
        ("%", JinjaTokenKind.MultiplicativeOperator),
        ("=", JinjaTokenKind.Equals),
    ];

    /// <summary>Whitespace as JavaScript's <c>String.prototype.trim</c> and the reference lexer see it.</summary>
    internal static bool IsWhitespace(char c) => c <= ' '
        ? c == ' ' || (c >= '\t' && c <= '\r')
        : c > 127 && (c == '\u00A0' || c == '\u1680' || (c >= '\u2000' && c <= '\u200A') || c == '\u2028' || c == '\u2029'
            || c == '\u202F' || c == '\u205F' || c == '\u3000' || c == '\uFEFF');

    private static bool IsWord(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';

    /// <summary>Tokenizes <paramref name="source"/>.</summary>
    /// <exception cref="ChatTemplateException">When the text cannot be tokenized; the error names the line and column.</exception>
    public static List<JinjaToken> Tokenize(string source)
    {
        var (src, map) = Preprocess(source);
        var tokens = new List<JinjaToken>();
        int pos = 0;
        int curlyDepth = 0;
        int length = src.Length;

        int Origin(int p) => p < map.Count ? map[p] : source.Length;
        ChatTemplateException Error(string message, int p) => JinjaErrors.Syntax(message, source, Origin(p));

        void ConsumeWhitespace()
        {
            while (IsWhitespace(src[pos]))
            {
                if (++pos >= length)
                {
                    throw Error("Unexpected end of template inside a tag", pos);
                }
            }
        }

        void StripTrailingWhitespace()
        {
            if (tokens.Count > 0 && tokens[^1].Kind == JinjaTokenKind.Text)
            {
                var last = tokens[^1];
                var trimmed = last.Value.TrimEnd(WhitespaceChars);
                tokens.RemoveAt(tokens.Count - 1);
                if (trimmed.Length > 0)
                {
                    tokens.Add(last with { Value = trimmed });
                }
            }
        }

        void SkipLeadingWhitespace()
        {
            while (pos < length && IsWhitespace(src[pos]))
            {
                ++pos;
            }
        }

        while (pos < length)
        {
            var lastKind = tokens.Count == 0 ? (JinjaTokenKind?)null : tokens[^1].Kind;
            if (lastKind is null or JinjaTokenKind.CloseStatement or JinjaTokenKind.CloseExpression or JinjaTokenKind.Comment)
            {
                int end = pos;
                while (true)
                {
                    end = src.IndexOf('{', end);
                    if (end < 0)
                    {
                        end = length;
                        break;
                    }

                    char next = end + 1 < length ? src[end + 1] : '\0';
                    if (next is '%' or '{' or '#')
                    {
                        break;
                    }

                    ++end;
                }

                if (end > pos)
                {
                    tokens.Add(new JinjaToken(JinjaTokenKind.Text, src[pos..end], Origin(pos)));
                    pos = end;
                    continue;
                }
            }

            if (src[pos] == '{' && pos + 1 < length)
            {
                char next = src[pos + 1];
                if (next == '#')
                {
                    int start = pos;
                    pos += 2;
                    bool stripBefore = pos < length && src[pos] == '-';
                    if (stripBefore)
                    {
                        ++pos;
                    }

                    int end = src.IndexOf("#}", pos, StringComparison.Ordinal);
                    if (end < 0)
                    {
                        throw Error("Missing the end of a comment ('#}')", start);
                    }

                    var comment = src[pos..end];
                    bool stripAfter = comment.EndsWith('-');
                    if (stripBefore)
                    {
                        StripTrailingWhitespace();
                    }

                    tokens.Add(new JinjaToken(JinjaTokenKind.Comment, stripAfter ? comment[..^1] : comment, Origin(start)));
                    pos = end + 2;
                    if (stripAfter)
                    {
                        SkipLeadingWhitespace();
                    }

                    continue;
                }

                if (pos + 2 < length && src[pos + 2] == '-' && next is '%' or '{')
                {
                    StripTrailingWhitespace();
                    tokens.Add(new JinjaToken(next == '%' ? JinjaTokenKind.OpenStatement : JinjaTokenKind.OpenExpression, next == '%' ? "{%" : "{{", Origin(pos)));
                    if (next == '{')
                    {
                        curlyDepth = 0;
                    }

                    pos += 3;
                    continue;
                }
            }

            ConsumeWhitespace();
            char c = src[pos];
            if (c == '-' && pos + 2 < length && src[pos + 2] == '}' && src[pos + 1] is '%' or '}')
            {
                bool statement = src[pos + 1] == '%';
                tokens.Add(new JinjaToken(statement ? JinjaTokenKind.CloseStatement : JinjaTokenKind.CloseExpression, statement ? "%}" : "}}", Origin(pos)));
                pos += 3;
                SkipLeadingWhitespace();
                continue;
            }

            if (c is '-' or '+')
            {
                if (lastKind is null or JinjaTokenKind.Text)
                {
                    throw Error($"Unexpected character '{c}'", pos);
                }

                if (lastKind is not (JinjaTokenKind.Identifier or JinjaTokenKind.NumericLiteral or JinjaTokenKind.StringLiteral
                    or JinjaTokenKind.CloseParen or JinjaTokenKind.CloseSquareBracket))
                {
                    int start = pos;
                    ++pos;
                    var num = ConsumeDigits();
                    if (num.Length > 0 && pos + 1 < length && src[pos] == '.' && char.IsAsciiDigit(src[pos + 1]))
                    {
                        ++pos;
                        num = num + "." + ConsumeDigits();
                    }

                    tokens.Add(new JinjaToken(num.Length > 0 ? JinjaTokenKind.NumericLiteral : JinjaTokenKind.UnaryOperator, c + num, Origin(start)));
                    continue;
                }
            }

            bool matched = false;
            foreach (var (seq, kind) in Rules)
            {
                if (seq == "}}" && curlyDepth > 0)
                {
                    continue;
                }

                if (string.CompareOrdinal(src, pos, seq, 0, seq.Length) == 0)
                {
                    tokens.Add(new JinjaToken(kind, seq, Origin(pos)));
                    if (kind == JinjaTokenKind.OpenExpression)
                    {
                        curlyDepth = 0;
                    }
                    else if (kind == JinjaTokenKind.OpenCurlyBracket)
                    {
                        ++curlyDepth;
                    }
                    else if (kind == JinjaTokenKind.CloseCurlyBracket)
                    {
                        --curlyDepth;
                    }

                    pos += seq.Length;
                    matched = true;
                    break;
                }
            }

            if (matched)
            {
                continue;
            }

            if (c is '\'' or '"')
            {
                int start = pos;
                ++pos;
                var text = ConsumeString(c, start);
                tokens.Add(new JinjaToken(JinjaTokenKind.StringLiteral, text, Origin(start)));
                ++pos;
                continue;
            }

            if (char.IsAsciiDigit(c))
            {
                int start = pos;
                var num = ConsumeDigits();
                if (lastKind != JinjaTokenKind.Dot && pos + 1 < length && src[pos] == '.' && char.IsAsciiDigit(src[pos + 1]))
                {
                    ++pos;
                    num = num + "." + ConsumeDigits();
                }

                tokens.Add(new JinjaToken(JinjaTokenKind.NumericLiteral, num, Origin(start)));
                continue;
            }

            if (IsWord(c))
            {
                int start = pos;
                while (pos < length && IsWord(src[pos]))
                {
                    ++pos;
                }

                if (pos >= length)
                {
                    throw Error("Unexpected end of template inside a tag", pos);
                }

                tokens.Add(new JinjaToken(JinjaTokenKind.Identifier, src[start..pos], Origin(start)));
                continue;
            }

            throw Error($"Unexpected character '{c}'", pos);
        }

        return tokens;

        string ConsumeDigits()
        {
            int start = pos;
            while (pos < length && char.IsAsciiDigit(src[pos]))
            {
                ++pos;
            }

            if (pos >= length)
            {
                throw Error("Unexpected end of template inside a tag", pos);
            }

            return src[start..pos];
        }

        string ConsumeString(char quote, int start)
        {
            var text = new StringBuilder();
            while (true)
            {
                if (pos >= length)
                {
                    throw Error("Unterminated string literal", start);
                }

                char ch = src[pos];
                if (ch == quote)
                {
                    return text.ToString();
                }

                ++pos;
                if (ch != '\\')
                {
                    text.Append(ch);
                    continue;
                }

                if (pos >= length)
                {
                    throw Error("Unterminated string literal", start);
                }

                char escaped = src[pos++];
                switch (escaped)
                {
                    case 'n': text.Append('\n'); break;
                    case 't': text.Append('\t'); break;
                    case 'r': text.Append('\r'); break;
                    case 'b': text.Append('\b'); break;
                    case 'f': text.Append('\f'); break;
                    case 'v': text.Append('\v'); break;
                    case '\'': text.Append('\''); break;
                    case '"': text.Append('"'); break;
                    case '\\': text.Append('\\'); break;
                    case 'x' or 'u':
                        {
                            int hexLength = escaped == 'x' ? 2 : 4;
                            if (pos + hexLength > length || !int.TryParse(src.AsSpan(pos, hexLength), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code))
                            {
                                throw Error($"Invalid hexadecimal escape sequence '\\{escaped}'", pos - 2);
                            }

                            text.Append((char)code);
                            pos += hexLength;
                            break;
                        }

                    default:
                        throw Error($"Unknown escape sequence '\\{escaped}' in a string literal", pos - 2);
                }
            }
        }
    }

    private static readonly char[] WhitespaceChars = BuildWhitespaceChars();

    private static char[] BuildWhitespaceChars()
    {
        var list = new List<char>();
        for (int c = 0; c <= 0xFFFF; c++)
        {
            if (IsWhitespace((char)c))
            {
                list.Add((char)c);
            }
        }

        return [.. list];
    }

    /// <summary>Trims JavaScript whitespace from both ends.</summary>
    internal static string JsTrim(string s) => s.Trim(WhitespaceChars);

    /// <summary>Trims JavaScript whitespace from the start.</summary>
    internal static string JsTrimStart(string s) => s.TrimStart(WhitespaceChars);

    /// <summary>Trims JavaScript whitespace from the end.</summary>
    internal static string JsTrimEnd(string s) => s.TrimEnd(WhitespaceChars);

    /// <summary>
    /// The reference's preprocessing (drop one final line feed; lstrip_blocks; trim_blocks; remove generation markers), with
    /// the offset in <paramref name="source"/> of every character kept, for error positions.
    /// </summary>
    internal static (string Text, List<int> Map) Preprocess(string source)
    {
        var chars = new List<(char C, int Offset)>(source.Length);
        int n = source.EndsWith('\n') ? source.Length - 1 : source.Length;
        for (int i = 0; i < n; i++)
        {
            chars.Add((source[i], i));
        }

        // lstrip_blocks: /^[ \t]*({[#%-])/gm: blanks at a line start before "{#", "{%" or "{-" go.
        var stripped = new List<(char C, int Offset)>(chars.Count);
        for (int i = 0; i < chars.Count;)
        {
            bool lineStart = i == 0 || chars[i - 1].C is '\n' or '\r' or '\u2028' or '\u2029';
            if (lineStart)
            {
                int j = i;
                while (j < chars.Count && chars[j].C is ' ' or '\t')
                {
                    j++;
                }

                if (j > i && j + 1 < chars.Count && chars[j].C == '{' && chars[j + 1].C is '#' or '%' or '-')
                {
                    i = j;
                }
                else if (j > i)
                {
                    for (; i < j; i++)
                    {
                        stripped.Add(chars[i]);
                    }

                    continue;
                }
            }

            stripped.Add(chars[i]);
            i++;
        }

        // trim_blocks: /([#%-]})\n/g: the line feed right after "#}", "%}" or "-}" goes.
        var trimmed = new List<(char C, int Offset)>(stripped.Count);
        for (int i = 0; i < stripped.Count; i++)
        {
            trimmed.Add(stripped[i]);
            if (stripped[i].C == '}' && i > 0 && stripped[i - 1].C is '#' or '%' or '-' && i + 1 < stripped.Count && stripped[i + 1].C == '\n')
            {
                i++;
            }
        }

        var text = new string([.. trimmed.Select(t => t.C)]);
        var map = trimmed.Select(t => t.Offset).ToList();
        return (RemoveGenerationMarkers(text, map), map);
    }

    private static string RemoveGenerationMarkers(string text, List<int> map)
    {
        // /{%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs
        int search = 0;
        var result = new StringBuilder();
        var resultMap = new List<int>();
        int lastIndex = 0;
        bool any = false;
        while (true)
        {
            int start = text.IndexOf("{%", search, StringComparison.Ordinal);
            if (start < 0)
            {
                break;
            }

            int p = start + 2;
            bool lstrip = p < text.Length && text[p] == '-';
            if (lstrip)
            {
                p++;
            }

            while (p < text.Length && char.IsWhiteSpace(text[p]))
            {
                p++;
            }

            if (string.CompareOrdinal(text, p, "end", 0, 3) == 0)
            {
                p += 3;
            }

            if (string.CompareOrdinal(text, p, "generation", 0, 10) != 0)
            {
                search = start + 2;
                continue;
            }

            p += 10;
            while (p < text.Length && char.IsWhiteSpace(text[p]))
            {
                p++;
            }

            bool rstrip = p < text.Length && text[p] == '-';
            if (rstrip)
            {
                p++;
            }

            if (string.CompareOrdinal(text, p, "%}", 0, 2) != 0)
            {
                search = start + 2;
                continue;
            }

            p += 2;
            int afterStart = p;
            while (p < text.Length && char.IsWhiteSpace(text[p]))
            {
                p++;
            }

            any = true;
            int endIndex = start;
            while (lstrip && endIndex > lastIndex && IsWhitespace(text[endIndex - 1]))
            {
                --endIndex;
            }

            Append(lastIndex, endIndex);
            if (!rstrip)
            {
                Append(afterStart, p);
            }

            lastIndex = p;
            search = p;
        }

        if (!any)
        {
            return text;
        }

        Append(lastIndex, text.Length);
        map.Clear();
        map.AddRange(resultMap);
        return result.ToString();

        void Append(int from, int to)
        {
            result.Append(text, from, to - from);
            for (int i = from; i < to; i++)
            {
                resultMap.Add(map[i]);
            }
        }
    }
}
