using System.Globalization;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Formats;

/// <summary>The tensors a Llama model of a given <see cref="ModelConfig"/> has, with their shapes; shared validation.</summary>
internal static class LlamaLayout
{
    /// <summary>One expected tensor.</summary>
    public readonly record struct Expected(string Name, long[] Shape, bool Required);

    /// <summary>Every tensor of the model in a stable order (embeddings, blocks, norm, head). <see cref="LlamaTensorNames.LmHead"/> is optional when tied.</summary>
    public static IEnumerable<Expected> Tensors(ModelConfig config)
    {
        long hidden = config.HiddenSize;
        long inter = config.IntermediateSize;
        long q = (long)config.NumHeads * config.HeadDim;
        long kv = (long)config.NumKeyValueHeads * config.HeadDim;
        long vocab = config.VocabSize;
        yield return new(LlamaTensorNames.Embeddings, [vocab, hidden], true);
        for (var b = 0; b < config.NumLayers; b++)
        {
            yield return new(LlamaTensorNames.Block(b, LlamaTensorNames.InputNorm), [hidden], true);
            yield return new(LlamaTensorNames.Block(b, LlamaTensorNames.QProj), [q, hidden], true);
            yield return new(LlamaTensorNames.Block(b, LlamaTensorNames.KProj), [kv, hidden], true);
            yield return new(LlamaTensorNames.Block(b, LlamaTensorNames.VProj), [kv, hidden], true);
            yield return new(LlamaTensorNames.Block(b, LlamaTensorNames.OProj), [hidden, q], true);
            yield return new(LlamaTensorNames.Block(b, LlamaTensorNames.PostAttentionNorm), [hidden], true);
            yield return new(LlamaTensorNames.Block(b, LlamaTensorNames.GateProj), [inter, hidden], true);
            yield return new(LlamaTensorNames.Block(b, LlamaTensorNames.UpProj), [inter, hidden], true);
            yield return new(LlamaTensorNames.Block(b, LlamaTensorNames.DownProj), [hidden, inter], true);
        }

        yield return new(LlamaTensorNames.FinalNorm, [hidden], true);
        yield return new(LlamaTensorNames.LmHead, [vocab, hidden], !config.TieWordEmbeddings);
    }

    /// <summary>
    /// Checks that every tensor the configuration needs is present with the right shape and a weight dtype (float, or block-quantized for matrices).
    /// Stops at the first problem, so an absurd layer count cannot make it loop long.
    /// </summary>
    public static void Check(ModelConfig config, IReadOnlyDictionary<string, TensorDescriptor> tensors, string path, Func<string, string>? storedName = null, Func<string, string?>? pathOf = null)
    {
        foreach (var e in Tensors(config))
        {
            if (!tensors.TryGetValue(e.Name, out var d))
            {
                if (e.Required)
                {
                    throw new ModelFormatException(path, storedName?.Invoke(e.Name) ?? e.Name, $"required tensor is missing (expected shape [{string.Join(", ", e.Shape)}]).");
                }

                continue;
            }

            var where = pathOf?.Invoke(e.Name) ?? path;
            if (!d.Shape.SequenceEqual(e.Shape))
            {
                throw new ModelFormatException(where, storedName?.Invoke(e.Name) ?? e.Name, $"shape [{string.Join(", ", d.Shape)}] disagrees with the configuration, which needs [{string.Join(", ", e.Shape)}].");
            }

            // Matrices may be block-quantized (served as stored); norms are vectors of floats, as every GGUF writer keeps them.
            if (d.DType is not (TensorDType.F32 or TensorDType.F16 or TensorDType.BF16) && !(d.DType.IsBlockQuantized() && d.Shape.Count == 2))
            {
                throw new ModelFormatException(where, storedName?.Invoke(e.Name) ?? e.Name, d.DType.IsBlockQuantized()
                    ? $"dtype {d.DType} is block-quantized, but only matrices may be (vectors such as norms must be F32, F16 or BF16)."
                    : $"dtype {d.DType} is not a weight type (F32, F16, BF16, or a block-quantized type for matrices).");
            }
        }
    }

    /// <summary>Validates a configuration, reporting the field at fault as a <see cref="ModelFormatException"/>.</summary>
    public static void Validate(ModelConfig config, string path)
    {
        Require(config.HiddenSize > 0, "hidden_size", config.HiddenSize);
        Require(config.IntermediateSize > 0, "intermediate_size", config.IntermediateSize);
        Require(config.NumLayers > 0, "num_hidden_layers", config.NumLayers);
        Require(config.NumHeads > 0, "num_attention_heads", config.NumHeads);
        Require(config.NumKeyValueHeads > 0 && config.NumHeads % config.NumKeyValueHeads == 0, "num_key_value_heads", config.NumKeyValueHeads);
        Require(config.HeadDim > 0 && config.HeadDim % 2 == 0, "head_dim", config.HeadDim);
        Require((long)config.HeadDim * config.NumHeads <= int.MaxValue, "head_dim", config.HeadDim);
        Require(config.VocabSize > 0, "vocab_size", config.VocabSize);
        Require(config.MaxPositionEmbeddings > 0, "max_position_embeddings", config.MaxPositionEmbeddings);
        Require(config.RmsNormEps > 0 && double.IsFinite(config.RmsNormEps), "rms_norm_eps", config.RmsNormEps);
        Require(config.RopeTheta > 0 && double.IsFinite(config.RopeTheta), "rope_theta", config.RopeTheta);
        if (config.BosTokenId is { } bos)
        {
            Require(bos >= 0, "bos_token_id", bos);
        }

        foreach (var eos in config.EosTokenIds)
        {
            Require(eos >= 0, "eos_token_id", eos);
        }

        try
        {
            config.Validate(path);
        }
        catch (InvalidDataException ex)
        {
            throw new ModelFormatException(path, null, ex.Message, ex);
        }

        void Require(bool condition, string field, object value)
        {
            if (!condition)
            {
                throw new ModelFormatException(path, field, string.Create(CultureInfo.InvariantCulture, $"invalid value {value}."));
            }
        }
    }
}
