using Petals.Formats;
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
    /// tokenizer_config.json), or a tokenizer.json file (tokenizer_config.json beside it is used when present).
    /// </summary>
    /// <param name="path">A directory or a tokenizer.json file.</param>
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

        // Where the GGUF reader lands, a ".gguf" branch goes here: read tokenizer.ggml.* metadata and call
        // SentencePieceBpeTokenizer.FromVocabulary(...) when tokenizer.ggml.model is "llama", or
        // ByteLevelBpeTokenizer.FromVocabulary(...) when it is "gpt2" (Llama 3 GGUFs).
        if (jsonPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            throw new ModelFormatException(jsonPath, null, "GGUF tokenizers are loaded through the GGUF reader, which calls SentencePieceBpeTokenizer.FromVocabulary or ByteLevelBpeTokenizer.FromVocabulary.");
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
