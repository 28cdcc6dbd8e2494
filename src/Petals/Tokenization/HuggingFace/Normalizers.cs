using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Petals.Tokenization.HuggingFace;

/// <summary>A tokenizer.json normalizer: rewrites text before pre-tokenization.</summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);

    public static Normalizer? Parse(JsonElement? element, string path, JsonFields f)
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
                JsonElement items = f.RequiredArray(e, "normalizers", path);
                var list = new List<Normalizer>();
                int i = 0;
                foreach (JsonElement item in items.EnumerateArray())
                {
                    if (Parse(item, JsonFields.Index(path + ".normalizers", i++), f) is { } n)
                    {
                        list.Add(n);
                    }
                }

                return new SequenceNormalizer([.. list]);
            }

            case "Prepend":
                return new PrependNormalizer(f.RequiredString(e, "prepend", path));
            case "Replace":
            {
                (string pattern, bool isRegex) = f.Pattern(e, "pattern", path);
                return new ReplaceNormalizer(pattern, isRegex, f.RequiredString(e, "content", path));
            }

            case "NFC":
                return new UnicodeNormalizer(NormalizationForm.FormC);
            case "NFD":
                return new UnicodeNormalizer(NormalizationForm.FormD);
            case "NFKC":
                return new UnicodeNormalizer(NormalizationForm.FormKC);
            case "NFKD":
                return new UnicodeNormalizer(NormalizationForm.FormKD);
            case "Lowercase":
                return new LowercaseNormalizer();
            case "Strip":
                return new StripNormalizer(f.OptionalBool(e, "left", path, true), f.OptionalBool(e, "right", path, true));
            default:
                throw f.Error(path + ".type", $"unsupported normalizer type '{type}'.");
        }
    }
}

internal sealed class SequenceNormalizer(Normalizer[] items) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (Normalizer n in items)
        {
            text = n.Normalize(text);
        }

        return text;
    }
}

internal sealed class PrependNormalizer(string prefix) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

internal sealed class ReplaceNormalizer : Normalizer
{
    private readonly string _pattern;
    private readonly string _content;
    private readonly CodePointRegex? _regex;

    public ReplaceNormalizer(string pattern, bool isRegex, string content)
    {
        _pattern = pattern;
        _content = content;
        _regex = isRegex ? new CodePointRegex(pattern) : null;
    }

    public override string Normalize(string text) => Replace(text, _pattern, _regex, _content);

    public static string Replace(string text, string pattern, CodePointRegex? regex, string content)
    {
        if (regex is null)
        {
            return pattern.Length == 0 ? text : text.Replace(pattern, content, StringComparison.Ordinal);
        }

        var matches = new List<(int Start, int Length)>();
        regex.Matches(text, matches);
        if (matches.Count == 0)
        {
            return text;
        }

        var sb = new StringBuilder(text.Length);
        int last = 0;
        foreach ((int start, int length) in matches)
        {
            sb.Append(text, last, start - last).Append(content);
            last = start + length;
        }

        return sb.Append(text, last, text.Length - last).ToString();
    }
}

internal sealed class UnicodeNormalizer(NormalizationForm form) : Normalizer
{
    public override string Normalize(string text) => text.IsNormalized(form) ? text : text.Normalize(form);
}

internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text) => text.ToLowerInvariant();
}

internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) => (left, right) switch
    {
        (true, true) => text.Trim(),
        (true, false) => text.TrimStart(),
        (false, true) => text.TrimEnd(),
        _ => text,
    };
}
