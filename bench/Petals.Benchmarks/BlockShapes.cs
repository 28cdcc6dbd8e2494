using Petals.Models;

namespace Petals.Benchmarks;

/// <summary>The block shapes the benchmark knows, as one-layer model configurations.</summary>
internal static class BlockShapes
{
    public static readonly string[] Names = ["llama2-7b", "llama3-8b", "tiny"];

    public static ModelConfig Get(string name) => name switch
    {
        // Llama-2-7B: multi-head attention.
        "llama2-7b" => new ModelConfig
        {
            HiddenSize = 4096, IntermediateSize = 11008, NumLayers = 1, NumHeads = 32, NumKeyValueHeads = 32,
            HeadDim = 128, VocabSize = 32000, RmsNormEps = 1e-5, RopeTheta = 10000.0, MaxPositionEmbeddings = 4096,
        },
        // Llama-3-8B: grouped-query attention with 8 KV heads.
        "llama3-8b" => new ModelConfig
        {
            HiddenSize = 4096, IntermediateSize = 14336, NumLayers = 1, NumHeads = 32, NumKeyValueHeads = 8,
            HeadDim = 128, VocabSize = 128256, RmsNormEps = 1e-5, RopeTheta = 500000.0, MaxPositionEmbeddings = 8192,
        },
        // A tiny shape for quick checks of the harness itself.
        "tiny" => new ModelConfig
        {
            HiddenSize = 256, IntermediateSize = 688, NumLayers = 1, NumHeads = 8, NumKeyValueHeads = 2,
            HeadDim = 32, VocabSize = 512, RmsNormEps = 1e-5, RopeTheta = 10000.0, MaxPositionEmbeddings = 4096,
        },
        _ => throw new ArgumentException($"Unknown shape '{name}'; known: {string.Join(", ", Names)}.", nameof(name)),
    };

    /// <summary>The shape <c>[rows, cols]</c> (or <c>[n]</c>) of each per-block tensor, in <see cref="LlamaTensorNames.BlockTensors"/> order.</summary>
    public static long[] TensorShape(ModelConfig c, string suffix)
    {
        long h = c.HiddenSize, q = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, i = c.IntermediateSize;
        return suffix switch
        {
            LlamaTensorNames.InputNorm or LlamaTensorNames.PostAttentionNorm => [h],
            LlamaTensorNames.QProj => [q, h],
            LlamaTensorNames.KProj or LlamaTensorNames.VProj => [kv, h],
            LlamaTensorNames.OProj => [h, q],
            LlamaTensorNames.GateProj or LlamaTensorNames.UpProj => [i, h],
            LlamaTensorNames.DownProj => [h, i],
            _ => throw new ArgumentException($"Not a block tensor: '{suffix}'.", nameof(suffix)),
        };
    }

    /// <summary>The number of parameters of one block.</summary>
    public static long ParameterCount(ModelConfig c)
    {
        long n = 0;
        foreach (var suffix in LlamaTensorNames.BlockTensors)
        {
            long e = 1;
            foreach (var d in TensorShape(c, suffix))
            {
                e *= d;
            }

            n += e;
        }

        return n;
    }
}
