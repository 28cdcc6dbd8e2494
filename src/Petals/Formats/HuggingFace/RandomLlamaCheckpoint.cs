using System.Runtime.InteropServices;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Formats.HuggingFace;

/// <summary>
/// Random fp32 Llama checkpoints of any shape in the Hugging Face layout (config.json + safetensors), for tests,
/// simulations and benchmarks that need a model of a realistic size without a model hub: norms near 1, matrices
/// uniform in ±1/√(inputs), so activations stay in range through many blocks. Deterministic for a seed.
/// </summary>
public static class RandomLlamaCheckpoint
{
    /// <summary>Every weight a Llama model of <paramref name="config"/> has, with its shape, in file order (the head only when untied).</summary>
    /// <param name="config">The model configuration.</param>
    /// <returns>Name and shape of each tensor.</returns>
    public static IEnumerable<(string Name, long[] Shape)> Shapes(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        long hidden = config.HiddenSize;
        long inter = config.IntermediateSize;
        long q = (long)config.NumHeads * config.HeadDim;
        long kv = (long)config.NumKeyValueHeads * config.HeadDim;
        yield return (LlamaTensorNames.Embeddings, [config.VocabSize, hidden]);
        for (var b = 0; b < config.NumLayers; b++)
        {
            yield return (LlamaTensorNames.Block(b, LlamaTensorNames.InputNorm), [hidden]);
            yield return (LlamaTensorNames.Block(b, LlamaTensorNames.QProj), [q, hidden]);
            yield return (LlamaTensorNames.Block(b, LlamaTensorNames.KProj), [kv, hidden]);
            yield return (LlamaTensorNames.Block(b, LlamaTensorNames.VProj), [kv, hidden]);
            yield return (LlamaTensorNames.Block(b, LlamaTensorNames.OProj), [hidden, q]);
            yield return (LlamaTensorNames.Block(b, LlamaTensorNames.PostAttentionNorm), [hidden]);
            yield return (LlamaTensorNames.Block(b, LlamaTensorNames.GateProj), [inter, hidden]);
            yield return (LlamaTensorNames.Block(b, LlamaTensorNames.UpProj), [inter, hidden]);
            yield return (LlamaTensorNames.Block(b, LlamaTensorNames.DownProj), [hidden, inter]);
        }

        yield return (LlamaTensorNames.FinalNorm, [hidden]);
        if (!config.TieWordEmbeddings)
        {
            yield return (LlamaTensorNames.LmHead, [config.VocabSize, hidden]);
        }
    }

    /// <summary>Writes a random fp32 checkpoint of <paramref name="config"/> into <paramref name="directory"/> (created if needed).</summary>
    /// <param name="directory">The output directory.</param>
    /// <param name="config">The model configuration.</param>
    /// <param name="seed">The seed: the same seed gives the same weights.</param>
    /// <param name="maxShardBytes">Split the safetensors into shards of at most this size (default: one file).</param>
    public static void Write(string directory, ModelConfig config, ulong seed, long maxShardBytes = long.MaxValue)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(config);
        var tensors = new List<WeightTensor>();
        var index = 0UL;
        foreach (var (name, shape) in Shapes(config))
        {
            var count = shape.Aggregate(1L, (a, d) => a * d);
            var bytes = new byte[checked(count * sizeof(float))];
            var values = MemoryMarshal.Cast<byte, float>(bytes.AsSpan());
            var isNorm = shape.Length == 1;
            Fill(values, seed * 1_000_003UL + index++, isNorm ? 1f : 0f, isNorm ? 0.1f : (float)(1.0 / Math.Sqrt(shape[^1])));
            tensors.Add(new WeightTensor(new TensorDescriptor(name, TensorDType.F32, shape), bytes));
        }

        Directory.CreateDirectory(directory);
        HuggingFaceModelWriter.Write(directory, config, tensors, maxShardBytes);
    }

    /// <summary>Uniform values in <c>center ± halfWidth</c> from a SplitMix64 stream.</summary>
    private static void Fill(Span<float> destination, ulong seed, float center, float halfWidth)
    {
        var state = seed;
        for (var i = 0; i < destination.Length; i++)
        {
            state += 0x9E3779B97F4A7C15UL;
            var z = state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            var unit = (z >> 40) * (1.0f / (1 << 24));
            destination[i] = center + (halfWidth * ((2 * unit) - 1));
        }
    }
}
