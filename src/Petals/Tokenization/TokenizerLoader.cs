using Petals.Formats;
using Petals.Formats.Gguf;
using Petals.Tokenization.HuggingFace;

namespace Petals.Tokenization;

/// <summary>Loads tokenizers from files.</summary>
public static class TokenizerLoader
{
    /// <summary>The Hugging Face tokenizer file name.</summary>
    public const string TokenizerJsonFileName = "tokenizer.json";

    /// <summary>The Hugging Face tokenizer configuration file name (optional beside tokenizer.json).</summary>
    public const string TokenizerConfigFileName = "tokenizer_config.json";

    /// <summary>
    /// Loads a tokenizer from <paramref name="path"/>: a directory holding tokenizer.json (and optionally
    /// tokenizer_config.json), a tokenizer.json file (tokenizer_config.json beside it is used when present), or a
    /// .gguf file with an embedded vocabulary (see <see cref="FromGguf"/>).
    /// </summary>
    /// <param name="path">A directory, a tokenizer.json file or a .gguf file.</param>
    /// <returns>The tokenizer; immutable and thread-safe.</returns>
    /// <exception cref="ModelFormatException">The files are missing, not valid JSON, or use an unsupported or
    /// malformed component; the message names the file and the field (e.g. <c>model.type</c>).</exception>
    public static ITokenizer Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string jsonPath;
        if (Directory.Exists(path))
        {
            jsonPath = Path.Combine(path, TokenizerJsonFileName);
            if (!File.Exists(jsonPath))
            {
                throw new ModelFormatException(path, null, $"the directory has no {TokenizerJsonFileName}.");
            }
        }
        else if (File.Exists(path))
        {
            jsonPath = path;
        }
        else
        {
            throw new ModelFormatException(path, null, "no such file or directory.");
        }

        if (jsonPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            using var gguf = GgufFile.Open(jsonPath);
            return FromGguf(gguf);
        }

        string configPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(jsonPath))!, TokenizerConfigFileName);
        string? config = File.Exists(configPath) ? Read(configPath, File.ReadAllText) : null;
        return HuggingFaceTokenizer.Parse(Read(jsonPath, File.ReadAllBytes), jsonPath, config, config is null ? null : configPath);
    }

    /// <summary>Creates a tokenizer from tokenizer.json text (and optionally tokenizer_config.json text).</summary>
    /// <param name="tokenizerJson">The content of tokenizer.json.</param>
    /// <param name="tokenizerConfigJson">The content of tokenizer_config.json, or <see langword="null"/>.</param>
    /// <param name="sourceName">A name for error messages (e.g. the file path).</param>
    /// <returns>The tokenizer; immutable and thread-safe.</returns>
    /// <exception cref="ModelFormatException">The JSON is invalid or uses an unsupported or malformed component.</exception>
    public static ITokenizer FromJson(string tokenizerJson, string? tokenizerConfigJson = null, string sourceName = TokenizerJsonFileName)
    {
        ArgumentNullException.ThrowIfNull(tokenizerJson);
        return HuggingFaceTokenizer.Parse(System.Text.Encoding.UTF8.GetBytes(tokenizerJson), sourceName, tokenizerConfigJson, tokenizerConfigJson is null ? null : TokenizerConfigFileName);
    }

    /// <summary>
    /// Creates the tokenizer embedded in a GGUF file's metadata (<c>tokenizer.ggml.*</c>). Supported: the SentencePiece-style
    /// vocabulary with scores (<c>tokenizer.ggml.model = "llama"</c>, as written by llama2.c and llama.cpp) and the byte-level
    /// BPE vocabulary with merges (<c>"gpt2"</c>, as in Llama 3 GGUF files).
    /// </summary>
    /// <param name="gguf">An open GGUF file.</param>
    /// <returns>The tokenizer; immutable and thread-safe, independent of the file once created.</returns>
    /// <exception cref="ModelFormatException">The metadata has no vocabulary, an unsupported tokenizer model, or inconsistent arrays; the field names the GGUF key.</exception>
    public static ITokenizer FromGguf(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        var meta = gguf.Tokenizer;
        var model = meta.Model ?? "llama";
        var tokens = meta.Tokens ?? throw new ModelFormatException(gguf.Path, "tokenizer.ggml.tokens", "the file has no embedded vocabulary.");
        if (string.Equals(model, "gpt2", StringComparison.Ordinal))
        {
            var (byteTokens, byteTypes, merges) = ByteLevelArrays(gguf, meta);
            return ByteLevelBpeTokenizer.FromVocabulary(
                byteTokens,
                byteTypes,
                merges,
                meta.PreTokenizer,
                meta.BosTokenId,
                meta.EosTokenId,
                addBos: meta.AddBosToken ?? false,
                sourcePath: gguf.Path);
        }

        if (!string.Equals(model, "llama", StringComparison.Ordinal))
        {
            throw new ModelFormatException(gguf.Path, "tokenizer.ggml.model",
                $"tokenizer model '{model}' is not supported; GGUF vocabularies of type 'llama' (SentencePiece-style) and 'gpt2' (byte-level BPE) are.");
        }

        var scores = meta.Scores ?? throw new ModelFormatException(gguf.Path, "tokenizer.ggml.scores", "a 'llama' vocabulary needs merge scores.");
        var types = meta.TokenTypes ?? Enumerable.Repeat(SentencePieceBpeTokenizer.TokenTypeNormal, tokens.Count).ToArray();
        return SentencePieceBpeTokenizer.FromVocabulary(
            [.. tokens],
            [.. scores],
            [.. types],
            meta.BosTokenId,
            meta.EosTokenId,
            meta.UnknownTokenId,
            addBos: meta.AddBosToken ?? true,
            addSpacePrefix: meta.AddSpacePrefix ?? true,
            sourcePath: gguf.Path);
    }

    /// <summary>
    /// Writes the Hugging Face <c>tokenizer.json</c> and <c>tokenizer_config.json</c> equivalent to the vocabulary
    /// embedded in <paramref name="gguf"/> (the files <see cref="Load"/> then reads from the directory): SentencePiece
    /// vocabularies through <see cref="SentencePieceBpeTokenizer.WriteHuggingFaceFiles"/>, byte-level ones through
    /// <see cref="ByteLevelBpeTokenizer.WriteHuggingFaceFiles"/>; the GGUF's <c>tokenizer.chat_template</c>, when present,
    /// becomes <c>chat_template</c> of tokenizer_config.json.
    /// </summary>
    /// <param name="gguf">An open GGUF file with an embedded vocabulary.</param>
    /// <param name="directory">The output directory (created if needed).</param>
    /// <exception cref="ModelFormatException">As <see cref="FromGguf"/>.</exception>
    public static void WriteHuggingFaceFiles(GgufFile gguf, string directory)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var meta = gguf.Tokenizer;
        if (string.Equals(meta.Model, "gpt2", StringComparison.Ordinal))
        {
            var (tokens, types, merges) = ByteLevelArrays(gguf, meta);
            ByteLevelBpeTokenizer.WriteHuggingFaceFiles(directory, tokens, types, merges, meta.PreTokenizer, meta.BosTokenId, meta.EosTokenId, meta.AddBosToken ?? false, gguf.Path);
        }
        else
        {
            ((SentencePieceBpeTokenizer)FromGguf(gguf)).WriteHuggingFaceFiles(directory);
        }

        CopyChatTemplate(gguf, directory);
    }

    /// <summary>Carries the GGUF's <c>tokenizer.chat_template</c> into the written tokenizer_config.json as <c>chat_template</c>.</summary>
    private static void CopyChatTemplate(GgufFile gguf, string directory)
    {
        if (gguf.GetValue(Chat.ChatTemplate.GgufChatTemplateKey)?.Value is not string template)
        {
            return;
        }

        var configPath = Path.Combine(directory, TokenizerConfigFileName);
        var config = File.Exists(configPath)
            ? System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(configPath))?.AsObject() ?? []
            : [];
        config["chat_template"] = template;
        File.WriteAllText(configPath, config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }

    private static (string[] Tokens, int[] Types, string[] Merges) ByteLevelArrays(GgufFile gguf, GgufTokenizerMetadata meta)
    {
        var tokens = meta.Tokens ?? throw new ModelFormatException(gguf.Path, "tokenizer.ggml.tokens", "the file has no embedded vocabulary.");
        var merges = meta.Merges ?? throw new ModelFormatException(gguf.Path, "tokenizer.ggml.merges", "a 'gpt2' vocabulary needs merges.");
        return ([.. tokens], meta.TokenTypes is { } t ? [.. t] : Enumerable.Repeat(SentencePieceBpeTokenizer.TokenTypeNormal, tokens.Count).ToArray(), [.. merges]);
    }

    private static T Read<T>(string path, Func<string, T> read)
    {
        try
        {
            return read(path);
        }
        catch (IOException ex)
        {
            throw new ModelFormatException(path, null, $"cannot read the file: {ex.Message}", ex);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new ModelFormatException(path, null, $"cannot read the file: {ex.Message}", ex);
        }
    }
}
