using Petals.Execution;
using Petals.Models;

namespace Petals.Abstractions.Tests.Execution;

public sealed class BlockAdaptationTests
{
    private static readonly ModelConfig Tiny = LoraWeightsTests.Tiny;

    [Fact]
    public void ValidPromptsAndAdaptersPass()
    {
        var blocks = new BlockRange(0, 4);
        var adaptation = new BlockAdaptation
        {
            Prompts = new float[4 * 2 * 3 * 8],
            PromptLength = 3,
            Lora = new LoraWeights(Tiny, blocks, 1, 1f, [LoraTarget.Value]),
        };

        adaptation.Validate(Tiny, blocks, batchSize: 2, tokenCount: 3);
        adaptation.Validate(Tiny, blocks, batchSize: 2, tokenCount: null);
        Assert.False(adaptation.IsEmpty);
        Assert.True(BlockAdaptation.None.IsEmpty);
        Assert.True(new BlockAdaptation { Adapter = "style" }.HasPrompts is false);
    }

    [Fact]
    public void EachMismatchIsNamed()
    {
        var blocks = new BlockRange(0, 4);
        string Fails(BlockAdaptation a, int batch = 2, int? tokens = 3) =>
            Assert.Throws<ArgumentException>(() => a.Validate(Tiny, blocks, batch, tokens)).Message;

        Assert.Contains("needs 192", Fails(new BlockAdaptation { Prompts = new float[191], PromptLength = 3 }), StringComparison.Ordinal);
        Assert.Contains("needs 0", Fails(new BlockAdaptation { Prompts = new float[8] }), StringComparison.Ordinal);
        Assert.Contains("only 2 tokens", Fails(new BlockAdaptation { Prompts = new float[192], PromptLength = 3 }, tokens: 2), StringComparison.Ordinal);
        Assert.Contains("must be 0 or more", Fails(new BlockAdaptation { PromptLength = -1 }), StringComparison.Ordinal);

        var nan = new float[192];
        nan[100] = float.NaN;
        Assert.Contains("NaN at index 100", Fails(new BlockAdaptation { Prompts = nan, PromptLength = 3 }), StringComparison.Ordinal);

        var lora = new LoraWeights(Tiny, blocks, 1, 1f, [LoraTarget.Value]);
        Assert.Contains("not both", Fails(new BlockAdaptation { Adapter = "a", Lora = lora }), StringComparison.Ordinal);
        Assert.Contains("for blocks 1:2; the pass runs blocks 0:4", Fails(new BlockAdaptation { Lora = lora.Slice(new BlockRange(1, 2)) }), StringComparison.Ordinal);
        lora.Values.Span[5] = float.PositiveInfinity;
        Assert.Contains("at index 5", Fails(new BlockAdaptation { Lora = lora }), StringComparison.Ordinal);
        var other = new LoraWeights(Tiny with { HiddenSize = 16, HeadDim = 4 }, blocks, 1, 1f, [LoraTarget.Value]);
        Assert.Contains("another model", Fails(new BlockAdaptation { Lora = other }), StringComparison.Ordinal);
    }

    [Fact]
    public void ForBlocksViewsThePromptsAndAdaptersOfASubRange()
    {
        var all = new BlockRange(0, 4);
        var prompts = Enumerable.Range(0, 4 * 1 * 2 * 8).Select(i => (float)i).ToArray();
        var lora = new LoraWeights(Tiny, all, 1, 1f, [LoraTarget.Query]);
        var adaptation = new BlockAdaptation { Prompts = prompts, PromptLength = 2, Lora = lora, };

        var part = adaptation.ForBlocks(all, new BlockRange(1, 3));
        Assert.Equal(32, part.Prompts.Length);
        Assert.Equal(16f, part.Prompts.Span[0]);
        Assert.Equal(new BlockRange(1, 3), part.Lora!.Blocks);
        part.Validate(Tiny, new BlockRange(1, 3), 1, 2);
        Assert.Same(adaptation, adaptation.ForBlocks(all, all));
        Assert.Throws<ArgumentOutOfRangeException>(() => adaptation.ForBlocks(all, new BlockRange(3, 5)));

        var gradients = new BlockGradients { Prompts = new float[64], Lora = lora.CreateZeros() };
        var gpart = gradients.ForBlocks(all, new BlockRange(3, 4));
        gpart.Prompts.Span[0] = 1f;
        Assert.Equal(1f, gradients.Prompts.Span[48]);
        Assert.Equal(new BlockRange(3, 4), gpart.Lora!.Blocks);
    }

    [Fact]
    public void GradientsMustFitTheAdaptation()
    {
        var all = new BlockRange(0, 4);
        var lora = new LoraWeights(Tiny, all, 1, 1f, [LoraTarget.Query]);
        var adaptation = new BlockAdaptation { Prompts = new float[64], PromptLength = 2, Lora = lora };
        new BlockGradients { Prompts = new float[64], Lora = lora.CreateZeros() }.Validate(adaptation);
        new BlockGradients().Validate(null);

        Assert.Contains("holds 63 values; the pass's deep prompts hold 64", Assert.Throws<ArgumentException>(() => new BlockGradients { Prompts = new float[63] }.Validate(adaptation)).Message, StringComparison.Ordinal);
        Assert.Contains("hold 0", Assert.Throws<ArgumentException>(() => new BlockGradients { Prompts = new float[8] }.Validate(null)).Message, StringComparison.Ordinal);
        var rank2 = new LoraWeights(Tiny, all, 2, 1f, [LoraTarget.Query]);
        Assert.Contains("does not match", Assert.Throws<ArgumentException>(() => new BlockGradients { Lora = rank2 }.Validate(adaptation)).Message, StringComparison.Ordinal);
        Assert.Contains("none", Assert.Throws<ArgumentException>(() => new BlockGradients { Lora = rank2 }.Validate(new BlockAdaptation { Adapter = "x" })).Message, StringComparison.Ordinal);
    }
}
