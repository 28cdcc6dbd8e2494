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
        string sourcePath = "(vocabulary)") =>
        Build(tokens, tokenTypes, merges, preTokenizer, bos, eos, addBos, sourcePath).Tokenizer;

    /// <summary>
    /// Writes the Hugging Face <c>tokenizer.json</c> (byte-level BPE with the pre-tokenizer's split regex, the BOS
    /// template when <paramref name="addBos"/>) and <c>tokenizer_config.json</c> equivalent to
    /// <see cref="FromVocabulary"/> into <paramref name="directory"/> (created if needed). The vocabulary is
    /// validated first, so nothing is written for a malformed one.
    /// </summary>
    /// <param name="directory">The output directory.</param>
    /// <param name="tokens">tokenizer.ggml.tokens.</param>
    /// <param name="tokenTypes">tokenizer.ggml.token_type.</param>
    /// <param name="merges">tokenizer.ggml.merges.</param>
    /// <param name="preTokenizer">tokenizer.ggml.pre.</param>
    /// <param name="bos">tokenizer.ggml.bos_token_id.</param>
    /// <param name="eos">tokenizer.ggml.eos_token_id.</param>
    /// <param name="addBos">tokenizer.ggml.add_bos_token.</param>
    /// <param name="sourcePath">The file the vocabulary came from, for error messages.</param>
    /// <exception cref="ModelFormatException">As <see cref="FromVocabulary"/>.</exception>
    public static void WriteHuggingFaceFiles(
        string directory,
        string[] tokens,
        int[] tokenTypes,
        string[] merges,
        string? preTokenizer,
        int? bos,
        int? eos,
        bool addBos,
        string sourcePath = "(vocabulary)")
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        (ITokenizer _, byte[] json) = Build(tokens, tokenTypes, merges, preTokenizer, bos, eos, addBos, sourcePath);
        using var config = new MemoryStream();
        using (var w = new Utf8JsonWriter(config, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteBoolean("add_bos_token", addBos);
            w.WriteBoolean("add_eos_token", false);
            WriteTokenOrNull(w, "bos_token", tokens, bos);
            WriteTokenOrNull(w, "eos_token", tokens, eos);
            w.WriteBoolean("clean_up_tokenization_spaces", false);
            w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
            w.WriteEndObject();
        }

        Directory.CreateDirectory(directory);
        File.WriteAllBytes(Path.Combine(directory, TokenizerLoader.TokenizerJsonFileName), json);
        File.WriteAllBytes(Path.Combine(directory, TokenizerLoader.TokenizerConfigFileName), config.ToArray());
    }

    private static void WriteTokenOrNull(Utf8JsonWriter w, string name, string[] tokens, int? id)
    {
        if (id is int value)
        {
            w.WriteString(name, tokens[value]);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private static (ITokenizer Tokenizer, byte[] Json) Build(
        string[] tokens,
        int[] tokenTypes,
        string[] merges,
        string? preTokenizer,
        int? bos,
        int? eos,
        bool addBos,
        string sourcePath)
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

        string? bosText = bos is int b ? tokens[b] : null;
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, TokenizerJsonWriting.Options))
        {
            // Every field the Rust crate's deserializers expect is written, so the file also loads there.
            TokenizerJsonWriting.WriteHeader(w);
            w.WriteStartArray("added_tokens");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < tokens.Length; i++)
            {
                string token = tokens[i] ?? throw new ModelFormatException(sourcePath, "tokenizer.ggml.tokens", $"token {i} is null.");
                if (tokenTypes[i] is SentencePieceBpeTokenizer.TokenTypeControl or SentencePieceBpeTokenizer.TokenTypeUserDefined && token.Length > 0 && seen.Add(token))
                {
                    TokenizerJsonWriting.WriteAddedToken(w, i, token, special: tokenTypes[i] == SentencePieceBpeTokenizer.TokenTypeControl);
                }
            }

            w.WriteEndArray();
            w.WriteNull("normalizer");
            w.WriteStartObject("pre_tokenizer");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("pretokenizers");
            w.WriteStartObject();
            w.WriteString("type", "Split");
            w.WriteStartObject("pattern");
            w.WriteString("Regex", pattern);
            w.WriteEndObject();
            w.WriteString("behavior", "Isolated");
            w.WriteBoolean("invert", false);
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteString("type", "ByteLevel");
            w.WriteBoolean("add_prefix_space", false);
            w.WriteBoolean("trim_offsets", true);
            w.WriteBoolean("use_regex", false);
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
            TokenizerJsonWriting.WriteBosPostProcessor(w, addBos ? bosText : null, bos);

            w.WriteStartObject("decoder");
            w.WriteString("type", "ByteLevel");
            w.WriteBoolean("add_prefix_space", true);
            w.WriteBoolean("trim_offsets", true);
            w.WriteBoolean("use_regex", true);
            w.WriteEndObject();
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteNull("dropout");
            w.WriteNull("unk_token");
            w.WriteNull("continuing_subword_prefix");
            w.WriteNull("end_of_word_suffix");
            w.WriteBoolean("fuse_unk", false);
            w.WriteBoolean("byte_fallback", false);
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

        string? eosText = eos is int e ? tokens[e] : null;
        byte[] json = stream.ToArray();
        try
        {
            return (HuggingFaceTokenizer.Parse(json, sourcePath, null, null, bosText, eosText), json);
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
