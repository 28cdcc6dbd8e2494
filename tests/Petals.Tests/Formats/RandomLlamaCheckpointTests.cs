using Petals.Formats;
using Petals.Models;
using Petals.Formats.HuggingFace;

namespace Petals.Tests.Formats;

public sealed class RandomLlamaCheckpointTests
{
    private static readonly ModelConfig Config = new()
    {
        HiddenSize = 32, IntermediateSize = 64, NumLayers = 3, NumHeads = 4, NumKeyValueHeads = 2, HeadDim = 8, VocabSize = 40,
        MaxPositionEmbeddings = 64, BosTokenId = 1, EosTokenIds = [2],
    };

    [Fact]
    public void A_written_checkpoint_loads_with_every_tensor_and_is_the_same_for_the_same_seed()
    {
        var root = Directory.CreateTempSubdirectory("petals-random-llama-");
        try
        {
            Check(root.FullName);
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    private static void Check(string root)
    {
        string a = Path.Combine(root, "a"), b = Path.Combine(root, "b"), c = Path.Combine(root, "c");
        RandomLlamaCheckpoint.Write(a, Config, seed: 5);
        RandomLlamaCheckpoint.Write(b, Config, seed: 5);
        RandomLlamaCheckpoint.Write(c, Config, seed: 6);
        using var wa = ModelLoader.Open(a);
        using var wb = ModelLoader.Open(b);
        using var wc = ModelLoader.Open(c);
        Assert.Equal(Config.NumLayers, wa.Config.NumLayers);
        Assert.Equal(RandomLlamaCheckpoint.Shapes(Config).Select(s => s.Name).Order(), wa.Tensors.Keys.Order());
        var q = LlamaTensorNames.Block(1, LlamaTensorNames.QProj);
        Assert.True(wa.GetTensor(q).Data.Span.SequenceEqual(wb.GetTensor(q).Data.Span));
        Assert.False(wa.GetTensor(q).Data.Span.SequenceEqual(wc.GetTensor(q).Data.Span));

        // Matrices within ±1/sqrt(inputs), norms within 1 ± 0.1.
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(wa.GetTensor(q).Data.Span);
        Assert.All(values.ToArray(), v => Assert.InRange(Math.Abs(v), 0f, 1f / MathF.Sqrt(32)));
        var norm = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(wa.GetTensor(LlamaTensorNames.FinalNorm).Data.Span);
        Assert.All(norm.ToArray(), v => Assert.InRange(v, 0.9f, 1.1f));
    }

    [Fact]
    public void A_tied_model_has_no_head()
    {
        Assert.DoesNotContain(RandomLlamaCheckpoint.Shapes(Config with { TieWordEmbeddings = true }), s => s.Name == LlamaTensorNames.LmHead);
        Assert.Contains(RandomLlamaCheckpoint.Shapes(Config), s => s.Name == LlamaTensorNames.LmHead);
    }
}
