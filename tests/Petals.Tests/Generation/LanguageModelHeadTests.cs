using Petals.Generation;
using Petals.Models;
using Petals.Numerics;
using Petals.Tensors;

namespace Petals.Tests.Generation;

public sealed class LanguageModelHeadTests
{
    [Theory]
    [InlineData(TensorDType.F32)]
    [InlineData(TensorDType.F16)]
    [InlineData(TensorDType.BF16)]
    public void LogitsEqualAFloat64NormAndProductOverTheStoredWeights(TensorDType dtype)
    {
        using var fixture = new RandomModelFixture(dtype, tied: false, layers: 1);
        var head = LanguageModelHead.Load(fixture.Weights);
        Assert.False(head.IsTied);
        var h = fixture.Config.HiddenSize;
        var x = Enumerable.Range(0, h).Select(i => MathF.Cos(i * 0.3f) * 2).ToArray();
        var logits = new float[fixture.Config.VocabSize];

        head.ComputeLogits(x, logits, new float[h]);

        var norm = ReadFloats(fixture.Weights.GetTensor(LlamaTensorNames.FinalNorm));
        var w = ReadFloats(fixture.Weights.GetTensor(LlamaTensorNames.LmHead));
        var rms = Math.Sqrt(x.Sum(v => (double)v * v) / h + fixture.Config.RmsNormEps);
        for (var r = 0; r < logits.Length; r++)
        {
            var expected = 0.0;
            for (var c = 0; c < h; c++)
            {
                expected += x[c] / rms * norm[c] * w[(r * h) + c];
            }

            Assert.True(Math.Abs(expected - logits[r]) <= 1e-5 * (1 + Math.Abs(expected)), $"row {r}: {logits[r]} vs {expected}");
        }
    }

    [Theory]
    [InlineData(TensorDType.F16)]
    [InlineData(TensorDType.BF16)]
    public void ComputingLogitsAllocatesNothingOnceWarm(TensorDType dtype)
    {
        // Runs once per generated token; the row scratch of F16/BF16 heads used to be a new array every call.
        using var fixture = new RandomModelFixture(dtype, tied: false, layers: 1);
        var head = LanguageModelHead.Load(fixture.Weights);
        var h = fixture.Config.HiddenSize;
        var x = Enumerable.Range(0, h).Select(i => MathF.Sin(i * 0.7f)).ToArray();
        var logits = new float[fixture.Config.VocabSize];
        var scratch = new float[h];
        var hidden = new float[h];
        int[] token = [7];
        head.ComputeLogits(x, logits, scratch);
        head.Embed(token, hidden);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 50; i++)
        {
            head.Embed(token, hidden);
            head.ComputeLogits(x, logits, scratch);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void TiedHeadsUseTheEmbeddingsAndEmbeddingRowsAreExact()
    {
        using var fixture = new RandomModelFixture(TensorDType.BF16, tied: true, layers: 1);
        var head = LanguageModelHead.Load(fixture.Weights);
        Assert.True(head.IsTied);
        var table = ReadFloats(fixture.Weights.GetTensor(LlamaTensorNames.Embeddings));
        var h = fixture.Config.HiddenSize;
        Assert.Equal(table.AsSpan(5 * h, h).ToArray(), head.GetEmbedding(5));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => head.GetEmbedding(97));
        Assert.Contains("outside the vocabulary", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BFloat16ConversionsRoundToNearestEvenAndWidenExactly()
    {
        Assert.Equal(0x3F80, DenseMatrix.SingleToBFloat16(1f));
        Assert.Equal(0x3F80, DenseMatrix.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808000))); // tie -> even
        Assert.Equal(0x3F82, DenseMatrix.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F818000))); // tie -> even (up)
        Assert.Equal(0x3F81, DenseMatrix.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808001)));
        Assert.True(float.IsNaN(BitConverter.UInt32BitsToSingle((uint)DenseMatrix.SingleToBFloat16(float.NaN) << 16)));
        var bits = Enumerable.Range(0, 40).Select(i => (ushort)(i * 1601)).ToArray();
        var wide = new float[bits.Length];
        DenseMatrix.BFloat16ToSingle(bits, wide);
        for (var i = 0; i < bits.Length; i++)
        {
            Assert.Equal((uint)bits[i] << 16, BitConverter.SingleToUInt32Bits(wide[i]));
        }
    }

    private static float[] ReadFloats(WeightTensor tensor)
    {
        var rows = tensor.Descriptor.Shape.Count == 2 ? (int)tensor.Descriptor.Shape[0] : 1;
        var cols = (int)tensor.Descriptor.Shape[^1];
        var matrix = new DenseMatrix(tensor with { Descriptor = tensor.Descriptor with { Shape = [rows, cols] } }, rows, cols);
        var result = new float[rows * cols];
        for (var r = 0; r < rows; r++)
        {
            matrix.ReadRow(r, result.AsSpan(r * cols, cols));
        }

        return result;
    }
}
