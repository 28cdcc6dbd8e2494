using System.Text;
using System.Text.Json;

namespace Petals.Tokenization.HuggingFace;

/// <summary>A tokenizer.json decoder: a chain step over the list of token strings (Hugging Face's decode_chain).</summary>
internal abstract class Decoder
{
    public abstract void DecodeChain(List<string> tokens);

    public static Decoder? Parse(JsonElement? element, string path, JsonFields f)
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
                JsonElement items = f.RequiredArray(e, "decoders", path);
                var list = new List<Decoder>();
                int i = 0;
                foreach (JsonElement item in items.EnumerateArray())
                {
                    if (Parse(item, JsonFields.Index(path + ".decoders", i++), f) is { } d)
                    {
                        list.Add(d);
                    }
                }

                return new SequenceDecoder([.. list]);
            }

            case "ByteLevel":
                return new ByteLevelDecoder();
            case "Replace":
            {
                (string pattern, bool isRegex) = f.Pattern(e, "pattern", path);
                return new ReplaceDecoder(pattern, isRegex ? PreTokenizer.CreateRegex(pattern, path + ".pattern", f) : null, f.RequiredString(e, "content", path));
            }

            case "ByteFallback":
                return new ByteFallbackDecoder();
            case "Fuse":
                return new FuseDecoder();
            case "Strip":
            {
                string content = f.RequiredString(e, "content", path);
                if (content.Length != 1)
                {
                    throw f.Error(path + ".content", "must be exactly one character.");
                }

                return new StripDecoder(content[0], f.OptionalInt(e, "start", path, 0), f.OptionalInt(e, "stop", path, 0));
            }

            case "Metaspace":
            {
                string replacement = f.RequiredString(e, "replacement", path);
                string scheme = f.OptionalString(e, "prepend_scheme", path)
                    ?? (f.OptionalBool(e, "add_prefix_space", path, true) ? "always" : "never");
                return new MetaspaceDecoder(replacement, scheme != "never");
            }

            default:
                throw f.Error(path + ".type", $"unsupported decoder type '{type}'.");
        }
    }
}

internal sealed class SequenceDecoder(Decoder[] items) : Decoder
{
    public override void DecodeChain(List<string> tokens)
    {
        foreach (Decoder d in items)
        {
            d.DecodeChain(tokens);
        }
    }
}

/// <summary>Turns byte-level characters back into bytes and the bytes into text (invalid UTF-8 becomes U+FFFD).</summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override void DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (string token in tokens)
        {
            if (!ByteLevelAlphabet.TryDecode(token, bytes))
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(token));
            }
        }

        string text = Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
        tokens.Clear();
        tokens.Add(text);
    }
}

internal sealed class ReplaceDecoder(string pattern, CodePointRegex? regex, string content) : Decoder
{
    public override void DecodeChain(List<string> tokens)
    {
        for (int i = 0; i < tokens.Count; i++)
        {
            tokens[i] = ReplaceNormalizer.Replace(tokens[i], pattern, regex, content);
        }
    }
}

/// <summary>
/// Turns runs of &lt;0xXX&gt; tokens into text. Invalid UTF-8 in a run is replaced as a lossy UTF-8 decoder does
/// (one U+FFFD per maximal invalid subpart), as the JavaScript reference (TextDecoder) does; the Rust crate
/// instead turns every byte of an invalid run into U+FFFD, which would make streamed text depend on the future.
/// </summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    public override void DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        var bytes = new List<byte>();
        foreach (string token in tokens)
        {
            if (TryParseByte(token, out byte b))
            {
                bytes.Add(b);
                continue;
            }

            Flush(bytes, output);
            output.Add(token);
        }

        Flush(bytes, output);
        tokens.Clear();
        tokens.AddRange(output);
    }

    public static bool TryParseByte(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out value);
    }

    private static void Flush(List<byte> bytes, List<string> output)
    {
        if (bytes.Count == 0)
        {
            return;
        }

        output.Add(Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes)));
        bytes.Clear();
    }
}

internal sealed class FuseDecoder : Decoder
{
    public override void DecodeChain(List<string> tokens)
    {
        string joined = string.Concat(tokens);
        tokens.Clear();
        tokens.Add(joined);
    }
}

/// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing occurrences of a character from every token.</summary>
internal sealed class StripDecoder(char content, int start, int stop) : Decoder
{
    public override void DecodeChain(List<string> tokens)
    {
        for (int i = 0; i < tokens.Count; i++)
        {
            string t = tokens[i];
            int s = 0;
            while (s < start && s < t.Length && t[s] == content)
            {
                s++;
            }

            int e = t.Length;
            int removed = 0;
            while (removed < stop && e > s && t[e - 1] == content)
            {
                e--;
                removed++;
            }

            tokens[i] = t[s..e];
        }
    }
}

/// <summary>Replaces the metaspace character with spaces, dropping the space it prepended to the first token.</summary>
internal sealed class MetaspaceDecoder(string replacement, bool prepended) : Decoder
{
    public override void DecodeChain(List<string> tokens)
    {
        for (int i = 0; i < tokens.Count; i++)
        {
            string t = tokens[i].Replace(replacement, " ", StringComparison.Ordinal);
            if (i == 0 && prepended && t.StartsWith(' '))
            {
                t = t[1..];
            }

            tokens[i] = t;
        }
    }
}
