using Petals.Formats.Gguf;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;

namespace Petals.Tests.Formats;

public sealed class RealGgufTests
{
    [Fact]
    public void Stories260KLoadsWithItsDocumentedConfig()
    {
        if (!TestData.SharedAvailable)
        {
            Assert.Skip(TestData.MissingMessage);
        }

        using var weights = GgufModelWeights.Open(TestData.Stories260KGguf);
        Assert.Equal(1, weights.File.Version);
        var c = weights.Config;
        Assert.Equal("llama", c.Architecture);
        Assert.Equal(64, c.HiddenSize);
        Assert.Equal(172, c.IntermediateSize);
        Assert.Equal(5, c.NumLayers);
        Assert.Equal(8, c.NumHeads);
        Assert.Equal(4, c.NumKeyValueHeads);
        Assert.Equal(8, c.HeadDim);
        Assert.Equal(512, c.VocabSize);
        Assert.Equal(512, c.MaxPositionEmbeddings);
        Assert.Equal(1e-5, c.RmsNormEps, 1e-9);
        Assert.Equal(1, c.BosTokenId);
        Assert.Equal([2], c.EosTokenIds);
        Assert.Equal(10000.0, c.RopeTheta);

        // The file stores output.weight (48 tensors: embeddings, 5 x 9 block tensors, final norm, head).
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal(48, weights.File.Tensors.Count);
        Assert.Equal(48, weights.Tensors.Count);
        Assert.Equal("Meta AI original pth", weights.File.GetString("llama.tensor_data_layout"));

        var tok = weights.File.Tokenizer;
        Assert.Equal("llama", tok.Model);
        Assert.Equal(512, tok.Tokens!.Count);
        Assert.Equal("<unk>", tok.Tokens[0]);
        Assert.Equal("<s>", tok.Tokens[1]);
        Assert.Equal("</s>", tok.Tokens[2]);
        Assert.Equal("<0x00>", tok.Tokens[3]);
        Assert.Equal(512, tok.Scores!.Count);
        Assert.Equal(512, tok.TokenTypes!.Count);
        Assert.Null(tok.AddBosToken);

        foreach (var (name, descriptor) in weights.Tensors)
        {
            var t = weights.GetTensor(name);
            Assert.Equal(descriptor, t.Descriptor);
            Assert.Equal(descriptor.ByteSize, t.Data.Length);
            Assert.Equal(TensorDType.F32, descriptor.DType);
        }

        Assert.Equal([512L, 64L], weights.Tensors[LlamaTensorNames.Embeddings].Shape);
        Assert.Equal([32L, 64L], weights.Tensors[LlamaTensorNames.Block(4, LlamaTensorNames.KProj)].Shape);
        Assert.Equal([64L, 172L], weights.Tensors[LlamaTensorNames.Block(4, LlamaTensorNames.DownProj)].Shape);
    }
}
