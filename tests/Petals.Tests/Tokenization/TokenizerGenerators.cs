using FsCheck;
using FsCheck.Fluent;

namespace Petals.Tests.Tokenization;

/// <summary>FsCheck generators of text that exercises tokenizers: ASCII, whitespace, accents, CJK, emoji (astral), ZWJ, specials.</summary>
internal static class TokenizerGenerators
{
    private static readonly string[] Fragments =
    [
        "a", "e", "the", " ", "  ", "\t", "\n", "\r\n", "1", "42", "2024", ".", ",", "!", "'s", "'", "\"", "-", "_", "(", ")", "<", ">",
        "é", "e\u0301", "ß", "ñ", "Ω", "中", "文", "日本", "한", "مر", "Привет", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "𝓗", "𠀀", "\u200d", "\u00a0",
        "Hello", " world", "Lily", " ball", "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "\u2581", "Ġ", "\0",
    ];

    // Shrinks by dropping whole code points (never splitting a surrogate pair).
    private static IEnumerable<string> Shrink(string s)
    {
        var elements = System.Globalization.StringInfo.GetTextElementEnumerator(s);
        var parts = new List<string>();
        while (elements.MoveNext())
        {
            parts.Add(elements.GetTextElement());
        }

        for (int i = 0; i < parts.Count; i++)
        {
            yield return string.Concat(parts.Take(i).Concat(parts.Skip(i + 1)));
        }
    }

    public static Arbitrary<string> Text()
    {
        Gen<string> fragment = Gen.Elements(Fragments);
        Gen<string> randomChar = Gen.Choose(0x20, 0x2FFFF)
            .Where(cp => cp is < 0xD800 or > 0xDFFF)
            .Select(char.ConvertFromUtf32);
        Gen<string> piece = Gen.Frequency((5, fragment), (1, randomChar));
        Gen<string> text = Gen.ListOf(piece).Select(parts => string.Concat(parts));
        return Arb.From(text, Shrink);
    }
}
