using System.Globalization;
using Petals.Tensors;

namespace Petals.Abstractions.Tests.Tensors;

/// <summary><see cref="BlockQuantization"/> against ggml itself (fixtures from llama.cpp's natives, see <see cref="GgmlFixtures"/>).</summary>
public sealed class BlockQuantizationGgmlTests(ITestOutputHelper output)
{
    public static TheoryData<TensorDType> AllTypes => [.. GgmlFixtures.Types];

    public static TheoryData<TensorDType> SimpleTypes => [TensorDType.Q8_0, TensorDType.Q4_0, TensorDType.Q4_1, TensorDType.Q5_0, TensorDType.Q5_1];

    public static TheoryData<TensorDType> KQuants => [TensorDType.Q2_K, TensorDType.Q3_K, TensorDType.Q4_K, TensorDType.Q5_K, TensorDType.Q6_K];

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void DequantizeOfRandomBlocksIsBitIdenticalToGgml(TensorDType dtype)
    {
        var f = GgmlFixtures.Load(dtype);
        var ours = new float[f.RandomDecoded.Length];
        BlockQuantization.Dequantize(dtype, f.RandomBlocks, ours);
        for (var i = 0; i < ours.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(f.RandomDecoded[i]) == BitConverter.SingleToInt32Bits(ours[i]), $"{dtype} element {i}: ggml {f.RandomDecoded[i]:R}, ours {ours[i]:R}");
        }

        // The fixture is not degenerate: random codes decode to many distinct values.
        Assert.True(ours.Distinct().Count() > ours.Length / 8);
    }

    [Theory]
    [MemberData(nameof(SimpleTypes))]
    public void QuantizeOfGaussianRowsIsByteIdenticalToGgml(TensorDType dtype)
    {
        var f = GgmlFixtures.Load(dtype);
        var ours = new byte[f.Quantized.Length];
        BlockQuantization.Quantize(dtype, GgmlFixtures.Gaussian, ours);
        var bb = dtype.BlockBytes();
        for (var i = 0; i < ours.Length; i++)
        {
            Assert.True(f.Quantized[i] == ours[i], $"{dtype} block {i / bb} byte {i % bb}: ggml {f.Quantized[i]}, ours {ours[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(KQuants))]
    public void KQuantErrorIsAtMostGgmlsReferenceQuantizer(TensorDType dtype)
    {
        var f = GgmlFixtures.Load(dtype);
        var x = GgmlFixtures.Gaussian;
        var ggml = new float[x.Length];
        BlockQuantization.Dequantize(dtype, f.Quantized, ggml);
        var bytes = new byte[f.Quantized.Length];
        BlockQuantization.Quantize(dtype, x, bytes);
        var ours = new float[x.Length];
        BlockQuantization.Dequantize(dtype, bytes, ours);

        // Gaussian rows only (all but the last row) and the outlier row separately.
        var columns = GgmlFixtures.Columns;
        var body = x.Length - columns;
        var (ggmlBody, oursBody) = (Rmse(x, ggml, 0, body), Rmse(x, ours, 0, body));
        var (ggmlOutlier, oursOutlier) = (Rmse(x, ggml, body, x.Length), Rmse(x, ours, body, x.Length));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{dtype}: RMSE Gaussian rows ours {oursBody:F5} ggml {ggmlBody:F5} ({oursBody / ggmlBody:F3}x); outlier row ours {oursOutlier:F5} ggml {ggmlOutlier:F5} ({oursOutlier / ggmlOutlier:F3}x)"));
        Assert.True(oursBody <= 1.05 * ggmlBody, $"{dtype}: RMSE {oursBody} vs ggml {ggmlBody}");
        Assert.True(oursOutlier <= 1.05 * ggmlOutlier, $"{dtype} outlier row: RMSE {oursOutlier} vs ggml {ggmlOutlier}");
    }

    private static double Rmse(float[] x, float[] y, int start, int end)
    {
        double sum = 0;
        for (var i = start; i < end; i++)
        {
            sum += (double)(x[i] - y[i]) * (x[i] - y[i]);
        }

        return Math.Sqrt(sum / (end - start));
    }
}
