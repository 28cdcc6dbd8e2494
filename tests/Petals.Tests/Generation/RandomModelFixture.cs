using Petals.Backends.Cpu;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;
using Petals.Tests.Formats;

namespace Petals.Tests.Generation;

/// <summary>A random Hugging Face model on disk, loaded through the real loader and the CPU executor.</summary>
internal sealed class RandomModelFixture : IDisposable
{
    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    public RandomModelFixture(TensorDType dtype, bool tied, int layers = 4, int seed = 11)
    {
        Config = new ModelConfig
        {
            HiddenSize = 48, IntermediateSize = 96, NumLayers = layers, NumHeads = 6, NumKeyValueHeads = 2, HeadDim = 8,
            VocabSize = 97, TieWordEmbeddings = tied, RmsNormEps = 1e-5, MaxPositionEmbeddings = 256, BosTokenId = 1, EosTokenIds = [2],
        };
        RandomModels.Write(_dir.Path, Config, dtype, seed);
        Weights = ModelLoader.Open(_dir.Path);
    }

    public ModelConfig Config { get; }

    public IModelWeights Weights { get; }

    public static CpuBlockExecutorFactory Factory { get; } = new(new CpuExecutorOptions { ThreadCount = 2 });

    public LocalTransformerBlocks CreateBlocks(params BlockRange[] spans) =>
        new(spans.Length == 0 ? [Factory.Create(Weights, new BlockRange(0, Config.NumLayers))] : spans.Select(s => Factory.Create(Weights, s)).ToArray());

    public CausalLanguageModel CreateModel(params BlockRange[] spans)
    {
        var blocks = CreateBlocks(spans);
        return new CausalLanguageModel(LanguageModelHead.Load(Weights), blocks, tokenizer: null, blocks);
    }

    public void Dispose()
    {
        Weights.Dispose();
        _dir.Dispose();
    }
}
