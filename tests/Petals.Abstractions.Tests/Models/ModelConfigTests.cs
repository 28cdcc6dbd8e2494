using Petals.Models;

namespace Petals.Abstractions.Tests.Models;

public sealed class ModelConfigTests
{
    private static readonly ModelConfig Valid = new()
    {
        HiddenSize = 64, IntermediateSize = 172, NumLayers = 5, NumHeads = 8, NumKeyValueHeads = 4, HeadDim = 8, VocabSize = 512,
    };

    [Fact]
    public void AValidConfigPassesAndReportsItsGroupSize()
    {
        Valid.Validate("test");
        Assert.Equal(2, Valid.GroupSize);
    }

    [Theory]
    [InlineData("hidden_size")]
    [InlineData("intermediate_size")]
    [InlineData("num_hidden_layers")]
    [InlineData("num_attention_heads")]
    [InlineData("num_key_value_heads")]
    [InlineData("head_dim")]
    [InlineData("vocab_size")]
    [InlineData("rms_norm_eps")]
    [InlineData("rope_theta")]
    public void AnInvalidFieldIsNamedWithTheSource(string field)
    {
        var config = field switch
        {
            "hidden_size" => Valid with { HiddenSize = 0 },
            "intermediate_size" => Valid with { IntermediateSize = -1 },
            "num_hidden_layers" => Valid with { NumLayers = 0 },
            "num_attention_heads" => Valid with { NumHeads = 0 },
            "num_key_value_heads" => Valid with { NumKeyValueHeads = 3 },
            "head_dim" => Valid with { HeadDim = 7 },
            "vocab_size" => Valid with { VocabSize = 0 },
            "rms_norm_eps" => Valid with { RmsNormEps = double.NaN },
            _ => Valid with { RopeTheta = 0 },
        };
        var ex = Assert.Throws<InvalidDataException>(() => config.Validate("/models/x/config.json"));
        Assert.Contains(field, ex.Message, StringComparison.Ordinal);
        Assert.Contains("/models/x/config.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BlockTensorNamesAreTheHuggingFaceOnes()
    {
        Assert.Equal("model.layers.3.self_attn.q_proj.weight", LlamaTensorNames.Block(3, LlamaTensorNames.QProj));
        Assert.Equal(9, LlamaTensorNames.BlockTensors.Count);
    }
}
