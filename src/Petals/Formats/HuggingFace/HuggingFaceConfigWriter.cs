using System.Text.Json;
using Petals.Models;

namespace Petals.Formats.HuggingFace;

/// <summary>Writes a <see cref="ModelConfig"/> as a Hugging Face <c>config.json</c> that <see cref="HuggingFaceConfig"/> reads back identically.</summary>
public static class HuggingFaceConfigWriter
{
    /// <summary>Writes <paramref name="config"/> to <paramref name="path"/> (indented JSON).</summary>
    /// <param name="config">The configuration.</param>
    /// <param name="path">The output file, usually <c>config.json</c>.</param>
    public static void Write(ModelConfig config, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        File.WriteAllBytes(path, ToJson(config));
    }

    /// <summary>The UTF-8 JSON of <paramref name="config"/>.</summary>
    /// <param name="config">The configuration.</param>
    /// <returns>The JSON bytes.</returns>
    public static byte[] ToJson(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartArray("architectures");
            json.WriteStringValue(config.Architecture == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM");
            json.WriteEndArray();
            json.WriteString("model_type", config.Architecture);
            json.WriteNumber("hidden_size", config.HiddenSize);
            json.WriteNumber("intermediate_size", config.IntermediateSize);
            json.WriteNumber("num_hidden_layers", config.NumLayers);
            json.WriteNumber("num_attention_heads", config.NumHeads);
            json.WriteNumber("num_key_value_heads", config.NumKeyValueHeads);
            json.WriteNumber("head_dim", config.HeadDim);
            json.WriteNumber("vocab_size", config.VocabSize);
            json.WriteNumber("max_position_embeddings", config.MaxPositionEmbeddings);
            json.WriteNumber("rms_norm_eps", config.RmsNormEps);
            json.WriteNumber("rope_theta", config.RopeTheta);
            if (config.RopeScaling is { } s)
            {
                json.WriteStartObject("rope_scaling");
                json.WriteString("rope_type", s.Type);
                json.WriteNumber("factor", s.Factor);
                json.WriteNumber("low_freq_factor", s.LowFreqFactor);
                json.WriteNumber("high_freq_factor", s.HighFreqFactor);
                json.WriteNumber("original_max_position_embeddings", s.OriginalMaxPositionEmbeddings);
                json.WriteEndObject();
            }
            else
            {
                json.WriteNull("rope_scaling");
            }

            json.WriteBoolean("tie_word_embeddings", config.TieWordEmbeddings);
            if (config.BosTokenId is { } bos)
            {
                json.WriteNumber("bos_token_id", bos);
            }
            else
            {
                json.WriteNull("bos_token_id");
            }

            switch (config.EosTokenIds.Count)
            {
                case 0:
                    json.WriteNull("eos_token_id");
                    break;
                case 1:
                    json.WriteNumber("eos_token_id", config.EosTokenIds[0]);
                    break;
                default:
                    json.WriteStartArray("eos_token_id");
                    foreach (var id in config.EosTokenIds)
                    {
                        json.WriteNumberValue(id);
                    }

                    json.WriteEndArray();
                    break;
            }

            json.WriteString("hidden_act", "silu");
            json.WriteEndObject();
        }

        return stream.ToArray();
    }
}
