using System.Globalization;
using System.Text.RegularExpressions;

namespace Petals.Tokenization.HuggingFace;

/// <summary>
/// Runs a .NET regular expression with code-point semantics. .NET matches UTF-16 code units, so a character
/// outside the Basic Multilingual Plane (emoji, rare CJK, math letters) would be seen as two surrogates of
/// category Cs and never match <c>\p{L}</c> or <c>\p{So}</c>. The reference (Oniguruma/Rust, JavaScript with
/// the u flag) sees one character. Before matching, every surrogate pair is replaced by one BMP stand-in of
/// the same Unicode general category, and match positions are mapped back.
/// </summary>
internal sealed class CodePointRegex
{
    private static readonly char[] StandIns = BuildStandIns();

    private readonly Regex _regex;

    public CodePointRegex(string pattern)
    {
        _regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled, TimeSpan.FromSeconds(10));
    }

    /// <summary>Appends (start, length) of every match in <paramref name="text"/>, in original UTF-16 positions.</summary>
    public void Matches(string text, List<(int Start, int Length)> matches)
    {
        if (!HasSurrogatePair(text))
        {
            for (Match m = _regex.Match(text); m.Success; m = m.NextMatch())
            {
                if (m.Length > 0)
                {
                    matches.Add((m.Index, m.Length));
                }
            }

            return;
        }

        var map = new int[text.Length + 1];
        var chars = new char[text.Length];
        int n = 0;
        for (int i = 0; i < text.Length; i++)
        {
            map[n] = i;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                chars[n++] = StandIns[(int)CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]))];
                i++;
            }
            else
            {
                chars[n++] = text[i];
            }
        }

        map[n] = text.Length;
        string substituted = new(chars, 0, n);
        for (Match m = _regex.Match(substituted); m.Success; m = m.NextMatch())
        {
            if (m.Length > 0)
            {
                int start = map[m.Index];
                matches.Add((start, map[m.Index + m.Length] - start));
            }
        }
    }

    private static bool HasSurrogatePair(string text)
    {
        int i = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDBFF');
        return i >= 0 && i + 1 < text.Length;
    }

    private static char[] BuildStandIns()
    {
        var result = new char[32];
        var found = new bool[32];
        for (int c = 0x100; c <= 0xFFFF; c++)
        {
            if (c is >= 0xD800 and <= 0xDFFF or 0x130 or 0x131 or 0x17F or 0x212A or 0x212B or 0x2126)
            {
                continue;
            }

            char ch = (char)c;
            int category = (int)char.GetUnicodeCategory(ch);
            if (found[category] || char.IsWhiteSpace(ch) || char.ToUpperInvariant(ch) < 0x80 || char.ToLowerInvariant(ch) < 0x80)
            {
                continue;
            }

            result[category] = ch;
            found[category] = true;
        }

        for (int i = 0; i < result.Length; i++)
        {
            if (!found[i])
            {
                result[i] = '\uFFFD';
            }
        }

        return result;
    }
}
