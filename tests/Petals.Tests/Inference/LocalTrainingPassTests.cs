using Petals.Execution;
using Petals.Inference;
using Petals.Models;
using Petals.Tensors;
using Petals.Tests.Generation;

namespace Petals.Tests.Inference;

/// <summary>The stateless training forward of local blocks and what it saves for the backward pass.</summary>
public sealed class LocalTrainingPassTests
{
    [Fact]
    public async Task TheTrainingForwardEqualsAStatelessPassAndSavesEachExecutorsInput()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var split = fixture.CreateBlocks(new BlockRange(0, 1), new BlockRange(1, 3), new BlockRange(3, 4));
        var h = fixture.Config.HiddenSize;
        var input = Enumerable.Range(0, 2 * 5 * h).Select(i => MathF.Sin(i * 0.37f)).ToArray();
        var ct = TestContext.Current.CancellationToken;

        var hidden = (float[])input.Clone();
        using var activations = await split.ForwardAsync(hidden, 2, 5, adaptation: null, ct);

        // The same blocks run one executor at a time, without a cache: the saved inputs are the states between them.
        var expected = (float[])input.Clone();
        var boundaries = new List<float[]>();
        foreach (var executor in split.Executors)
        {
            boundaries.Add((float[])expected.Clone());
            executor.Forward(expected, 2, 5, cache: null);
        }

        Assert.Equal(expected, hidden);
        Assert.Equal(3, activations.Segments.Count);
        Assert.Equal([new BlockRange(0, 1), new BlockRange(1, 3), new BlockRange(3, 4)], activations.Segments.Select(s => s.Blocks));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(boundaries[i], activations.Segments[i].Input.ToArray());
        }

        Assert.Equal(new BlockRange(0, 4), activations.Blocks);
        Assert.Null(activations.Adaptation);
    }

    [Fact]
    public async Task BadShapesNonFiniteInputsAndForeignActivationsAreRefused()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var blocks = fixture.CreateBlocks();
        using var other = fixture.CreateBlocks(new BlockRange(0, 2), new BlockRange(2, 4));
        var h = fixture.Config.HiddenSize;
        var ct = TestContext.Current.CancellationToken;

        var shape = await Assert.ThrowsAsync<ArgumentException>(async () => await blocks.ForwardAsync(new float[(3 * h) - 1], 1, 3, null, ct));
        Assert.Contains("expected batch 1 x tokens 3 x hidden 48 = 144", shape.Message, StringComparison.Ordinal);

        var nan = new float[3 * h];
        nan[h + 2] = float.NaN;
        var bad = await Assert.ThrowsAsync<ArgumentException>(async () => await blocks.ForwardAsync(nan, 1, 3, null, ct));
        Assert.Contains("NaN", bad.Message, StringComparison.Ordinal);

        using var activations = await other.ForwardAsync(new float[3 * h], 1, 3, null, ct);
        var foreign = await Assert.ThrowsAsync<ArgumentException>(async () => await blocks.BackwardAsync(activations, new float[3 * h], null, ct));
        Assert.Contains("not saved by a forward pass of these local blocks", foreign.Message, StringComparison.Ordinal);
        var gradShape = await Assert.ThrowsAsync<ArgumentException>(async () => await other.BackwardAsync(activations, new float[2 * h], null, ct));
        Assert.Contains("Gradients hold 96 values", gradShape.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ANamedAdapterMustBeHeldAndCoverEveryBlock()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        var config = fixture.Config;
        var all = new BlockRange(0, config.NumLayers);
        var ct = TestContext.Current.CancellationToken;
        var style = new LoraWeights(config, all, 2, 1f, [LoraTarget.Query]);
        using var blocks = new LocalTransformerBlocks([RandomModelFixture.Factory.Create(fixture.Weights, all)], adapters: new Dictionary<string, LoraWeights> { ["style"] = style });
        Assert.Equal(["style"], blocks.Adapters);

        var missing = await Assert.ThrowsAsync<ArgumentException>(async () => await blocks.OpenSessionAsync(1, 4, new BlockAdaptation { Adapter = "rhymes" }, ct));
        Assert.Contains("No adapter named 'rhymes': these local blocks hold [style]", missing.Message, StringComparison.Ordinal);
        var forward = await Assert.ThrowsAsync<ArgumentException>(async () => await blocks.ForwardAsync(new float[config.HiddenSize], 1, 1, new BlockAdaptation { Adapter = "rhymes" }, ct));
        Assert.Contains("No adapter named 'rhymes'", forward.Message, StringComparison.Ordinal);

        var partial = Assert.Throws<ArgumentException>(() => new LocalTransformerBlocks(
            [RandomModelFixture.Factory.Create(fixture.Weights, all)],
            adapters: new Dictionary<string, LoraWeights> { ["half"] = new LoraWeights(config, new BlockRange(0, 2), 2, 1f, [LoraTarget.Query]) }));
        Assert.Contains("Adapter 'half' covers blocks 0:2; local blocks need adapters for all 4 blocks", partial.Message, StringComparison.Ordinal);

        var prompts = await Assert.ThrowsAsync<ArgumentException>(async () => await blocks.ForwardAsync(new float[2 * config.HiddenSize], 1, 2, new BlockAdaptation { Prompts = new float[10], PromptLength = 1 }, ct));
        Assert.Contains("Deep prompts hold 10 values", prompts.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ActivationsKeepPartsInBlockOrder()
    {
        var config = LoraTestModel.Config;
        using var activations = new ForwardActivations(config, 1, 2, BlockAdaptation.None);
        Assert.Null(activations.Adaptation);
        activations.Add(new BlockRange(0, 2), new float[2 * config.HiddenSize], "peer-a");
        Assert.Equal("peer-a", activations.Segments[0].Runner);
        Assert.Contains("does not follow the saved parts (next block 2)", Assert.Throws<ArgumentException>(() => activations.Add(new BlockRange(3, 4), new float[2 * config.HiddenSize])).Message, StringComparison.Ordinal);
        Assert.Contains("the pass's hidden states hold 16", Assert.Throws<ArgumentException>(() => activations.Add(new BlockRange(2, 4), new float[3])).Message, StringComparison.Ordinal);
        activations.Dispose();
        Assert.Empty(activations.Segments);
        Assert.Throws<ObjectDisposedException>(() => activations.Add(new BlockRange(0, 1), new float[2 * config.HiddenSize]));
    }

    private static class LoraTestModel
    {
        public static ModelConfig Config { get; } = new()
        {
            HiddenSize = 8,
            IntermediateSize = 12,
            NumLayers = 4,
            NumHeads = 4,
            NumKeyValueHeads = 2,
            HeadDim = 2,
            VocabSize = 16,
        };
    }
}
