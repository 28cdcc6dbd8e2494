using System.Globalization;
using System.Text.Json;
using Petals.Models;

namespace Petals.Formats.HuggingFace;

/// <summary>Reads a Hugging Face <c>config.json</c> of the Llama family into a <see cref="ModelConfig"/>.</summary>
public static class HuggingFaceConfig
{
    /// <summary>The conventional file name.</summary>
    public const string FileName = "config.json";

    /// <summary>The largest <c>config.json</c> accepted (1 MiB).</summary>
    public const long MaxFileLength = 1 << 20;

    /// <summary>Reads and validates <paramref name="path"/>.</summary>
    /// <param name="path">A <c>config.json</c> file.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="ModelFormatException">When the JSON is invalid, a field is missing, of the wrong type or out of range, <c>model_type</c> is not Llama-family, or <c>rope_scaling</c> has an unknown type; the message names the field.</exception>
    /// <exception cref="IOException">When the file cannot be read.</exception>
    public static ModelConfig Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (new FileInfo(path).Length > MaxFileLength)
        {
            throw new ModelFormatException(path, null, $"the file is larger than {MaxFileLength} bytes; a configuration is a few kilobytes.");
        }

        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses <c>config.json</c> content.</summary>
    /// <param name="json">The UTF-8 JSON.</param>
    /// <param name="source">The file name used in error messages.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="ModelFormatException">As <see cref="Read"/>.</exception>
    public static ModelConfig Parse(ReadOnlyMemory<byte> json, string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 32, CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw new ModelFormatException(source, null, $"not valid JSON: {ex.Message}", ex);
        }

        using (doc)
        {
            try
            {
                return Parse(doc.RootElement, source);
            }
            catch (InvalidOperationException ex)
            {
                throw new ModelFormatException(source, null, $"the configuration holds invalid text: {ex.Message}", ex);
            }
        }
    }

    private static ModelConfig Parse(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(source, null, $"the configuration is a JSON {root.ValueKind}, not an object.");
        }

        var reader = new FieldReader(root, source);
        var modelType = reader.String("model_type") ?? throw new ModelFormatException(source, "model_type", "field is missing.");
        if (modelType == "mistral")
        {
            if (reader.OptionalInt("sliding_window") is { } window && window < (reader.OptionalInt("max_position_embeddings") ?? int.MaxValue))
            {
                throw new ModelFormatException(source, "sliding_window", "sliding-window attention is not supported.");
            }
        }
        else if (modelType != "llama")
        {
            throw new ModelFormatException(source, "model_type", $"model type '{modelType}' is not supported (llama, mistral without sliding window).");
        }

        var hidden = reader.Int("hidden_size");
        var heads = reader.Int("num_attention_heads");
        if (heads <= 0)
        {
            throw new ModelFormatException(source, "num_attention_heads", string.Create(CultureInfo.InvariantCulture, $"invalid value {heads}."));
        }

        var config = new ModelConfig
        {
            Architecture = modelType,
            HiddenSize = hidden,
            IntermediateSize = reader.Int("intermediate_size"),
            NumLayers = reader.Int("num_hidden_layers"),
            NumHeads = heads,
            NumKeyValueHeads = reader.OptionalInt("num_key_value_heads") ?? heads,
            HeadDim = reader.OptionalInt("head_dim") ?? (hidden % heads == 0 ? hidden / heads
                : throw new ModelFormatException(source, "num_attention_heads", string.Create(CultureInfo.InvariantCulture, $"{heads} does not divide hidden_size {hidden} and head_dim is absent."))),
            VocabSize = reader.Int("vocab_size"),
            RmsNormEps = reader.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = reader.OptionalDouble("rope_theta") ?? 10000.0,
            RopeScaling = ReadRopeScaling(root, source),
            MaxPositionEmbeddings = reader.OptionalInt("max_position_embeddings") ?? 2048,
            TieWordEmbeddings = reader.OptionalBool("tie_word_embeddings") ?? false,
            BosTokenId = reader.OptionalInt("bos_token_id"),
            EosTokenIds = reader.IntOrList("eos_token_id"),
        };
        LlamaLayout.Validate(config, source);
        return config;
    }

    private static RopeScaling? ReadRopeScaling(JsonElement root, string source)
    {
        if (!root.TryGetProperty("rope_scaling", out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (e.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(source, "rope_scaling", $"must be an object or null, found a JSON {e.ValueKind}.");
        }

        var reader = new FieldReader(e, source, "rope_scaling.");
        var typeField = e.TryGetProperty("rope_type", out _) ? "rope_type" : "type";
        var type = reader.String(typeField) ?? throw new ModelFormatException(source, "rope_scaling.rope_type", "field is missing.");
        switch (type)
        {
            case "default":
                return null;
            case RopeScaling.Llama3:
                var scaling = new RopeScaling(
                    type,
                    reader.OptionalDouble("factor") ?? throw new ModelFormatException(source, "rope_scaling.factor", "field is missing."),
                    reader.OptionalDouble("low_freq_factor") ?? 1.0,
                    reader.OptionalDouble("high_freq_factor") ?? 4.0,
                    reader.OptionalInt("original_max_position_embeddings") ?? 8192);
                Positive("factor", scaling.Factor);
                Positive("low_freq_factor", scaling.LowFreqFactor);
                Positive("high_freq_factor", scaling.HighFreqFactor);
                Positive("original_max_position_embeddings", scaling.OriginalMaxPositionEmbeddings);
                if (scaling.HighFreqFactor <= scaling.LowFreqFactor)
                {
                    throw new ModelFormatException(source, "rope_scaling.high_freq_factor", "must exceed low_freq_factor.");
                }

                return scaling;
            default:
                throw new ModelFormatException(source, "rope_scaling." + typeField, $"rope scaling type '{type}' is not supported (llama3, default).");
        }

        void Positive(string field, double value)
        {
            if (!(value > 0) || !double.IsFinite(value))
            {
                throw new ModelFormatException(source, "rope_scaling." + field, string.Create(CultureInfo.InvariantCulture, $"invalid value {value}."));
            }
        }
    }

    /// <summary>Typed access to the fields of one JSON object, with errors naming the field.</summary>
    private readonly struct FieldReader(JsonElement obj, string source, string prefix = "")
    {
        public string? String(string name) => Get(name) switch
        {
            null => null,
            { ValueKind: JsonValueKind.String } e => e.GetString(),
            { } e => throw Wrong(name, e, "a string"),
        };

        public int Int(string name) => OptionalInt(name) ?? throw new ModelFormatException(source, prefix + name, "field is missing.");

        public int? OptionalInt(string name)
        {
            var e = Get(name);
            if (e is null)
            {
                return null;
            }

            if (e.Value.ValueKind != JsonValueKind.Number || !e.Value.TryGetInt32(out var v))
            {
                throw Wrong(name, e.Value, "a 32-bit integer");
            }

            return v;
        }

        public double? OptionalDouble(string name)
        {
            var e = Get(name);
            if (e is null)
            {
                return null;
            }

            if (e.Value.ValueKind != JsonValueKind.Number || !e.Value.TryGetDouble(out var v) || !double.IsFinite(v))
            {
                throw Wrong(name, e.Value, "a finite number");
            }

            return v;
        }

        public bool? OptionalBool(string name) => Get(name) switch
        {
            null => null,
            { ValueKind: JsonValueKind.True } => true,
            { ValueKind: JsonValueKind.False } => false,
            { } e => throw Wrong(name, e, "a boolean"),
        };

        public int[] IntOrList(string name)
        {
            var e = Get(name);
            if (e is null)
            {
                return [];
            }

            if (e.Value.ValueKind == JsonValueKind.Number)
            {
                return [OptionalInt(name)!.Value];
            }

            if (e.Value.ValueKind != JsonValueKind.Array)
            {
                throw Wrong(name, e.Value, "an integer or a list of integers");
            }

            var list = new List<int>();
            foreach (var item in e.Value.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var v))
                {
                    throw Wrong(name, item, "a list of 32-bit integers");
                }

                list.Add(v);
            }

            return [.. list];
        }

        private JsonElement? Get(string name) =>
            obj.TryGetProperty(name, out var e) && e.ValueKind != JsonValueKind.Null ? e : null;

        private ModelFormatException Wrong(string name, JsonElement e, string expected)
        {
            var raw = e.GetRawText();
            return new ModelFormatException(source, prefix + name, $"expected {expected}, found {(raw.Length > 64 ? raw[..64] + "..." : raw)}.");
        }
    }
}
