using Petals.Execution;
using Petals.Models;

namespace Petals.Abstractions.Tests.Execution;

public sealed class LoraWeightsTests
{
    internal static readonly ModelConfig Tiny = new()
    {
        HiddenSize = 8,
        IntermediateSize = 12,
        NumLayers = 4,
        NumHeads = 4,
        NumKeyValueHeads = 2,
        HeadDim = 2,
        VocabSize = 16,
    };

    [Fact]
    public void ValuesAreBlockMajorWithAThenBPerTargetInTheGivenOrder()
    {
        var lora = new LoraWeights(Tiny, new BlockRange(1, 3), rank: 2, scale: 0.5f, [LoraTarget.Down, LoraTarget.Key]);

        // down: A [2, 12], B [8, 2] = 40; key: A [2, 8], B [4, 2] = 24.
        Assert.Equal(64, lora.ValuesPerBlock);
        Assert.Equal(128, lora.Values.Length);
        for (var i = 0; i < lora.Values.Length; i++)
        {
            lora.Values.Span[i] = i;
        }

        Assert.Equal(64f, lora.A(2, LoraTarget.Down).Span[0]);
        Assert.Equal(24, lora.A(2, LoraTarget.Down).Length);
        Assert.Equal(64f + 24, lora.B(2, LoraTarget.Down).Span[0]);
        Assert.Equal(16, lora.B(2, LoraTarget.Down).Length);
        Assert.Equal(40f, lora.A(1, LoraTarget.Key).Span[0]);
        Assert.Equal(56f, lora.B(1, LoraTarget.Key).Span[0]);
        Assert.Equal(8, lora.B(1, LoraTarget.Key).Length);
        Assert.True(lora.Has(LoraTarget.Key));
        Assert.False(lora.Has(LoraTarget.Query));
    }

    [Fact]
    public void ASliceIsAViewOfTheSameValues()
    {
        var lora = new LoraWeights(Tiny, new BlockRange(0, 4), 1, 1f, [LoraTarget.Query]);
        var slice = lora.Slice(new BlockRange(2, 3));
        slice.B(2, LoraTarget.Query).Span[3] = 7f;

        Assert.Equal(7f, lora.B(2, LoraTarget.Query).Span[3]);
        Assert.Equal(new BlockRange(2, 3), slice.Blocks);
        Assert.Same(lora, lora.Slice(lora.Blocks));
        Assert.True(slice.CreateZeros().HasLayoutOf(slice));
        Assert.False(slice.HasLayoutOf(lora));
    }

    [Fact]
    public void BadArgumentsAreRefusedWithTheReason()
    {
        var blocks = new BlockRange(0, 2);
        Assert.Contains("distinct", Assert.Throws<ArgumentException>(() => new LoraWeights(Tiny, blocks, 2, 1f, [LoraTarget.Up, LoraTarget.Up])).Message, StringComparison.Ordinal);
        Assert.Contains("distinct", Assert.Throws<ArgumentException>(() => new LoraWeights(Tiny, blocks, 2, 1f, [])).Message, StringComparison.Ordinal);
        Assert.Contains("not finite", Assert.Throws<ArgumentException>(() => new LoraWeights(Tiny, blocks, 2, float.NaN, [LoraTarget.Up])).Message, StringComparison.Ordinal);
        Assert.Contains("needs 80", Assert.Throws<ArgumentException>(() => new LoraWeights(Tiny, blocks, 2, 1f, [LoraTarget.Up], new float[79])).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraWeights(Tiny, blocks, 0, 1f, [LoraTarget.Up]));

        var lora = new LoraWeights(Tiny, blocks, 2, 1f, [LoraTarget.Up]);
        Assert.Contains("not in the adapters' blocks 0:2", Assert.Throws<ArgumentOutOfRangeException>(() => lora.A(2, LoraTarget.Up)).Message, StringComparison.Ordinal);
        Assert.Contains("q_proj is not adapted", Assert.Throws<ArgumentException>(() => lora.A(0, LoraTarget.Query)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => lora.Slice(new BlockRange(1, 3)));
    }

    [Theory]
    [InlineData("q_proj", LoraTarget.Query)]
    [InlineData("k_proj", LoraTarget.Key)]
    [InlineData("v_proj", LoraTarget.Value)]
    [InlineData("o_proj", LoraTarget.Output)]
    [InlineData("gate_proj", LoraTarget.Gate)]
    [InlineData("up_proj", LoraTarget.Up)]
    [InlineData("down_proj", LoraTarget.Down)]
    public void ModuleNamesRoundTrip(string name, LoraTarget target)
    {
        Assert.True(LoraTargets.TryParseModule(name, out var parsed));
        Assert.Equal(target, parsed);
        Assert.Equal(name, LoraTargets.ModuleName(target));
    }

    [Theory]
    [InlineData("lm_head")]
    [InlineData("Q_PROJ")]
    [InlineData("")]
    public void OtherModuleNamesAreNotTargets(string name) => Assert.False(LoraTargets.TryParseModule(name, out _));

    [Fact]
    public void ShapesFollowTheModel()
    {
        Assert.Equal((8, 8), (LoraTargets.InFeatures(Tiny, LoraTarget.Query), LoraTargets.OutFeatures(Tiny, LoraTarget.Query)));
        Assert.Equal((8, 4), (LoraTargets.InFeatures(Tiny, LoraTarget.Value), LoraTargets.OutFeatures(Tiny, LoraTarget.Value)));
        Assert.Equal((8, 8), (LoraTargets.InFeatures(Tiny, LoraTarget.Output), LoraTargets.OutFeatures(Tiny, LoraTarget.Output)));
        Assert.Equal((8, 12), (LoraTargets.InFeatures(Tiny, LoraTarget.Gate), LoraTargets.OutFeatures(Tiny, LoraTarget.Gate)));
        Assert.Equal((12, 8), (LoraTargets.InFeatures(Tiny, LoraTarget.Down), LoraTargets.OutFeatures(Tiny, LoraTarget.Down)));
    }
}
