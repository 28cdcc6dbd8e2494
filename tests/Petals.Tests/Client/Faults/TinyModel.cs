using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;
using Petals.Tests.Formats;
using Petals.Tests.Generation;

namespace Petals.Tests.Client.Faults;

/// <summary>A random Llama model of hidden size 16 on disk (fp32), loaded through the real loader; cheap enough to make per layer count.</summary>
internal sealed class TinyModel : IDisposable
{
    public const int Hidden = 16;
    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    public TinyModel(int layers, int seed = 7)
    {
        Config = new ModelConfig
        {
            HiddenSize = Hidden, IntermediateSize = 40, NumLayers = layers, NumHeads = 2, NumKeyValueHeads = 1, HeadDim = 8,
            VocabSize = 61, TieWordEmbeddings = false, RmsNormEps = 1e-5, MaxPositionEmbeddings = 128, BosTokenId = 1, EosTokenIds = [2],
        };
        RandomModels.Write(_dir.Path, Config, TensorDType.F32, seed);
        Weights = ModelLoader.Open(_dir.Path);
        Head = LanguageModelHead.Load(Weights);
    }

    public ModelConfig Config { get; }

    public IModelWeights Weights { get; }

    public LanguageModelHead Head { get; }

    public int Layers => Config.NumLayers;

    public LocalTransformerBlocks CreateLocalBlocksFor(BlockRange[] spans) => new([.. spans.Select(s => RandomModelFixture.Factory.Create(Weights, s))]);

    public LocalTransformerBlocks CreateLocalBlocks() => new([RandomModelFixture.Factory.Create(Weights, new BlockRange(0, Config.NumLayers))]);

    /// <summary>
    /// Greedy decoding driven step by step through <paramref name="session"/>: the prompt as one prefill, then one token
    /// per step. <paramref name="beforeStep"/> runs before each step (0 = the prefill) and <paramref name="afterStep"/> after it.
    /// </summary>
    /// <returns>The new tokens and the last position's hidden states after each step.</returns>
    public async Task<(List<int> Tokens, List<float[]> LastHidden)> GreedyAsync(
        ITransformerSession session, int[] prompt, int newTokens, Func<int, Task>? beforeStep, Func<int, Task>? afterStep, CancellationToken ct)
    {
        var tokens = new List<int>();
        var lastHidden = new List<float[]>();
        var logits = new float[Config.VocabSize];
        var scratch = new float[Hidden];
        int[] input = prompt;
        for (var step = 0; step < newTokens; step++)
        {
            var hidden = new float[input.Length * Hidden];
            Head.Embed(input, hidden);
            if (beforeStep is not null)
            {
                await beforeStep(step);
            }

            await session.ForwardAsync(hidden, input.Length, ct);
            if (afterStep is not null)
            {
                await afterStep(step);
            }

            var last = hidden.AsSpan((input.Length - 1) * Hidden, Hidden).ToArray();
            lastHidden.Add(last);
            Head.ComputeLogits(last, logits, scratch);
            var best = 0;
            for (var v = 1; v < logits.Length; v++)
            {
                if (logits[v] > logits[best])
                {
                    best = v;
                }
            }

            tokens.Add(best);
            input = [best];
        }

        return (tokens, lastHidden);
    }

    public void Dispose()
    {
        Weights.Dispose();
        _dir.Dispose();
    }
}
