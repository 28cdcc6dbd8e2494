using Petals.Models;

namespace Petals.Backends.Cpu.Tests;

/// <summary>Small model shapes covering MHA, GQA, odd widths, one head and Llama 3 rope scaling.</summary>
internal static class TestConfigs
{
    public static ModelConfig Get(string name, int layers = 2) => name switch
    {
        "mha" => Make(hidden: 64, inter: 160, layers, heads: 4, kv: 4, headDim: 16),
        "gqa" => Make(hidden: 64, inter: 128, layers, heads: 8, kv: 2, headDim: 8),
        "odd" => Make(hidden: 37, inter: 53, layers, heads: 1, kv: 1, headDim: 8),
        "wide" => Make(hidden: 96, inter: 200, layers, heads: 6, kv: 3, headDim: 16) with { RopeTheta = 500000 },
        "deep" => Make(hidden: 256, inter: 4200, layers, heads: 4, kv: 2, headDim: 64),
        "llama3" => Make(hidden: 64, inter: 96, layers, heads: 4, kv: 2, headDim: 16) with
        {
            RopeTheta = 500000,
            RopeScaling = new RopeScaling(RopeScaling.Llama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64),
        },
        _ => throw new ArgumentException(name, nameof(name)),
    };

    private static ModelConfig Make(int hidden, int inter, int layers, int heads, int kv, int headDim) => new()
    {
        HiddenSize = hidden,
        IntermediateSize = inter,
        NumLayers = layers,
        NumHeads = heads,
        NumKeyValueHeads = kv,
        HeadDim = headDim,
        VocabSize = 32,
        RmsNormEps = 1e-5,
    };
}
