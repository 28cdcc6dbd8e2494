using System.Text.Json;

namespace Petals.Tokenization.HuggingFace;

/// <summary>
/// The ids a post-processor adds around a single sequence when special tokens are requested
/// (TemplateProcessing's "single" template, Roberta/Bert's cls/sep; ByteLevel adds none).
/// </summary>
internal sealed class PostProcessor
{
    public PostProcessor(int[] prefix, int[] suffix)
    {
        Prefix = prefix;
        Suffix = suffix;
    }

    public int[] Prefix { get; }

    public int[] Suffix { get; }

    public static PostProcessor? Parse(JsonElement? element, string path, JsonFields f)
    {
        if (element is not { } e)
        {
            return null;
        }

        string type = f.RequiredString(e, "type", path);
        switch (type)
        {
            case "ByteLevel":
                return new PostProcessor([], []);
            case "Sequence":
            {
                var prefix = new List<int>();
                var suffix = new List<int>();
                JsonElement items = f.RequiredArray(e, "processors", path);
                int i = 0;
                foreach (JsonElement item in items.EnumerateArray())
                {
                    if (Parse(item, JsonFields.Index(path + ".processors", i++), f) is { } p)
                    {
                        prefix.InsertRange(0, p.Prefix);
                        suffix.AddRange(p.Suffix);
                    }
                }

                return new PostProcessor([.. prefix], [.. suffix]);
            }

            case "RobertaProcessing":
            case "BertProcessing":
                return new PostProcessor([SpecialPair(e, "cls", path, f)], [SpecialPair(e, "sep", path, f)]);
            case "TemplateProcessing":
                return ParseTemplate(e, path, f);
            default:
                throw f.Error(path + ".type", $"unsupported post-processor type '{type}'.");
        }
    }

    private static int SpecialPair(JsonElement e, string name, string path, JsonFields f)
    {
        JsonElement pair = f.RequiredArray(e, name, path);
        return pair.GetArrayLength() == 2 && pair[1].ValueKind == JsonValueKind.Number && pair[1].TryGetInt32(out int id)
            ? id
            : throw f.Error(path + "." + name, "expected [token, id].");
    }

    private static PostProcessor ParseTemplate(JsonElement e, string path, JsonFields f)
    {
        JsonElement single = f.RequiredArray(e, "single", path);
        JsonElement? specials = JsonFields.Optional(e, "special_tokens");
        var prefix = new List<int>();
        var suffix = new List<int>();
        bool seenSequence = false;
        int i = 0;
        foreach (JsonElement piece in single.EnumerateArray())
        {
            string field = JsonFields.Index(path + ".single", i++);
            if (JsonFields.Optional(piece, "Sequence") is not null)
            {
                if (seenSequence)
                {
                    throw f.Error(field, "the single template names the sequence twice.");
                }

                seenSequence = true;
                continue;
            }

            if (JsonFields.Optional(piece, "SpecialToken") is not { } special)
            {
                throw f.Error(field, "expected {\"SpecialToken\": …} or {\"Sequence\": …}.");
            }

            string name = f.RequiredString(special, "id", field + ".SpecialToken");
            if (specials is not { } map || JsonFields.Optional(map, name) is not { } entry)
            {
                throw f.Error(path + ".special_tokens", $"special token '{name}' used by the template is not defined.");
            }

            JsonElement ids = f.RequiredArray(entry, "ids", path + ".special_tokens." + name);
            foreach (JsonElement id in ids.EnumerateArray())
            {
                if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int value))
                {
                    throw f.Error(path + ".special_tokens." + name + ".ids", "expected integer ids.");
                }

                (seenSequence ? suffix : prefix).Add(value);
            }
        }

        if (!seenSequence)
        {
            throw f.Error(path + ".single", "the template has no {\"Sequence\": …} entry.");
        }

        return new PostProcessor([.. prefix], [.. suffix]);
    }
}
