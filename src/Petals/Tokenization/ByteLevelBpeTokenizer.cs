using System.Text.Json;
using Petals.Formats;
using Petals.Tokenization.HuggingFace;

namespace Petals.Tokenization;

/// <summary>
/// Builds the byte-level BPE tokenizer of a GGUF vocabulary with <c>tokenizer.ggml.model = "gpt2"</c> (Llama 3 and
/// other GPT-2-style vocabularies): tokens, token types, merges and the pre-tokenizer name
/// (<c>tokenizer.ggml.pre</c>). It behaves exactly like the equivalent Hugging Face tokenizer.json.
/// </summary>
public static class ByteLevelBpeTokenizer
{
    /// <summary>The Llama 3 (tiktoken cl100k-style) split pattern, used for <c>tokenizer.ggml.pre</c> "llama-bpe".</summary>
    public const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Creates the tokenizer from GGUF vocabulary arrays.</summary>
    /// <param name="tokens">tokenizer.ggml.tokens: byte-level token strings, indexed by id.</param>
    /// <param name="tokenTypes">tokenizer.ggml.token_type: 1 normal, 3 control, 4 user-defined (matched literally in text), …</param>
    /// <param name="merges">tokenizer.ggml.merges: "left right" strings, highest priority first.</param>
    /// <param name="preTokenizer">tokenizer.ggml.pre: "llama-bpe" / "llama3" (Llama 3 pattern, merges ignored for whole
    /// vocabulary words), or "default" / "gpt2" / <see langword="null"/> (the GPT-2 pattern).</param>
    /// <param name="bos">tokenizer.ggml.bos_token_id.</param>
    /// <param name="eos">tokenizer.ggml.eos_token_id.</param>
    /// <param name="addBos">tokenizer.ggml.add_bos_token.</param>
    /// <param name="sourcePath">The file the vocabulary came from, for error messages.</param>
    /// <returns>The tokenizer; immutable and thread-safe.</returns>
    /// <exception cref="ModelFormatException">The arrays disagree, a merge names an unknown token, an id is out of
    /// range, or the pre-tokenizer is not supported; the field names the GGUF key.</exception>
    public static ITokenizer FromVocabulary(
        string[] tokens,
        int[] tokenTypes,
        string[] merges,
        string? preTokenizer,
        int? bos,
        int? eos,
        bool addBos,
        string sourcePath = "(vocabulary)")
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(tokenTypes);
        ArgumentNullException.ThrowIfNull(merges);
        ArgumentNullException.ThrowIfNull(sourcePath);
        if (tokenTypes.Length != tokens.Length)
        {
            throw new ModelFormatException(sourcePath, "tokenizer.ggml.token_type", $"has {tokenTypes.Length} entries but there are {tokens.Length} tokens.");
        }

        foreach ((int? id, string key) in new[] { (bos, "tokenizer.ggml.bos_token_id"), (eos, "tokenizer.ggml.eos_token_id") })
        {
            if (id is int value && (value < 0 || value >= tokens.Length))
            {
                throw new ModelFormatException(sourcePath, key, $"id {value} is outside the vocabulary of {tokens.Length} tokens.");
            }
        }

        if (addBos && bos is null)
        {
            throw new ModelFormatException(sourcePath, "tokenizer.ggml.add_bos_token", "is true but there is no BOS token.");
        }

        (string pattern, bool ignoreMerges) = preTokenizer switch
        {
            null or "default" or "gpt2" or "gpt-2" => (PreTokenizer.Gpt2Pattern, false),
            "llama-bpe" or "llama3" or "llama-v3" => (Llama3Pattern, true),
            _ => throw new ModelFormatException(sourcePath, "tokenizer.ggml.pre", $"unsupported pre-tokenizer '{preTokenizer}' (supported: default, gpt2, llama-bpe)."),
        };

        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteStartArray("added_tokens");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < tokens.Length; i++)
            {
                string token = tokens[i] ?? throw new ModelFormatException(sourcePath, "tokenizer.ggml.tokens", $"token {i} is null.");
                if (tokenTypes[i] is SentencePieceBpeTokenizer.TokenTypeControl or SentencePieceBpeTokenizer.TokenTypeUserDefined && token.Length > 0 && seen.Add(token))
                {
                    w.WriteStartObject();
                    w.WriteNumber("id", i);
                    w.WriteString("content", token);
                    w.WriteBoolean("normalized", false);
                    w.WriteBoolean("special", tokenTypes[i] == SentencePieceBpeTokenizer.TokenTypeControl);
                    w.WriteEndObject();
                }
            }

            w.WriteEndArray();
            w.WriteStartObject("pre_tokenizer");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("pretokenizers");
            w.WriteStartObject();
            w.WriteString("type", "Split");
            w.WriteStartObject("pattern");
            w.WriteString("Regex", pattern);
            w.WriteEndObject();
            w.WriteString("behavior", "Isolated");
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteString("type", "ByteLevel");
            w.WriteBoolean("add_prefix_space", false);
            w.WriteBoolean("use_regex", false);
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
            if (addBos)
            {
                w.WriteStartObject("post_processor");
                w.WriteString("type", "TemplateProcessing");
                w.WriteStartArray("single");
                w.WriteStartObject();
                w.WriteStartObject("SpecialToken");
                w.WriteString("id", "bos");
                w.WriteEndObject();
                w.WriteEndObject();
                w.WriteStartObject();
                w.WriteStartObject("Sequence");
                w.WriteString("id", "A");
                w.WriteEndObject();
                w.WriteEndObject();
                w.WriteEndArray();
                w.WriteStartObject("special_tokens");
                w.WriteStartObject("bos");
                w.WriteStartArray("ids");
                w.WriteNumberValue(bos!.Value);
                w.WriteEndArray();
                w.WriteEndObject();
                w.WriteEndObject();
                w.WriteEndObject();
            }

            w.WriteStartObject("decoder");
            w.WriteString("type", "ByteLevel");
            w.WriteEndObject();
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteBoolean("ignore_merges", ignoreMerges);
            w.WriteStartObject("vocab");
            seen.Clear();
            for (int i = 0; i < tokens.Length; i++)
            {
                if (seen.Add(tokens[i]))
                {
                    w.WriteNumber(tokens[i], i);
                }
            }

            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (string merge in merges)
            {
                w.WriteStringValue(merge);
            }

            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }

        string? bosText = bos is int b ? tokens[b] : null;
        string? eosText = eos is int e ? tokens[e] : null;
        try
        {
            return HuggingFaceTokenizer.Parse(stream.ToArray(), sourcePath, null, null, bosText, eosText);
        }
        catch (ModelFormatException ex) when (ex.FilePath == sourcePath)
        {
            string field = ex.Field switch
            {
                { } f when f.StartsWith("model.merges", StringComparison.Ordinal) => "tokenizer.ggml.merges",
                { } f when f.StartsWith("model.vocab", StringComparison.Ordinal) => "tokenizer.ggml.tokens",
                _ => ex.Field ?? "tokenizer.ggml.tokens",
            };
            throw new ModelFormatException(sourcePath, field, ex.Message, ex);
        }
    }
}
