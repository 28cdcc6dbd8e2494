using Petals.Backends.Cpu.Kernels;
using Petals.Backends.Cpu.Linear;
using Petals.Backends.Cpu.Tests.Quant;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests.Backward;

/// <summary>The packed, transposed backward GEMM (<see cref="InputGradientGemm"/>) against the streaming kernel and float64, for every storage.</summary>
public sealed unsafe class InputGradientGemmTests
{
    public static TheoryData<TensorDType> Storages()
    {
        var data = new TheoryData<TensorDType> { TensorDType.F32, TensorDType.BF16, TensorDType.F16 };
        foreach (var f in ReferenceBlocks.Formats)
        {
            data.Add(f);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Storages))]
    public void PackedInputGradientMatchesFloat64AndTheStreamingKernel(TensorDType dtype)
    {
        var be = dtype.BlockElements();
        // More than one column chunk with a partial last one, more than one row block, and a partial token panel.
        var k = be == 256 ? 1792 : be > 1 ? 1088 : 1043;
        var rows = be == 256 ? 150 : 1100;
        const int m = 37;
        var random = new Random(77 + (int)dtype);
        byte[] bytes;
        double[] w;
        if (be == 1)
        {
            var values = new float[rows * k];
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = (float)((2 * random.NextDouble()) - 1);
            }

            bytes = new byte[dtype.ByteSize(values.Length)];
            BlockQuantization.Quantize(dtype, values, bytes);
            var back = new float[values.Length];
            BlockQuantization.Dequantize(dtype, bytes, back);
            w = Array.ConvertAll(back, v => (double)v);
        }
        else
        {
            bytes = ReferenceBlocks.RandomBlocks(dtype, rows * (k / be), random);
            w = ReferenceBlocks.Decode(dtype, bytes);
        }

        using var layer = LinearLayers.Create("w", dtype, bytes, rows, k);
        var dy = new float[m * rows];
        for (var i = 0; i < dy.Length; i++)
        {
            dy[i] = (float)((2 * random.NextDouble()) - 1);
        }

        var initial = new float[m * k];
        for (var i = 0; i < initial.Length; i++)
        {
            initial[i] = (float)((2 * random.NextDouble()) - 1);
        }

        var chunk = InputGradientGemm.ColumnChunk(layer.ColumnAlignment);
        var split = Math.Min(k, chunk) == k ? k : chunk;
        var packed = new float[PackedGemm.PackedSize(m, rows)];
        var scratch = new float[InputGradientGemm.ScratchFloats];
        var ours = (float[])initial.Clone();
        var streaming = (float[])initial.Clone();
        fixed (float* pdy = dy, pp = packed, ps = scratch, po = ours, pst = streaming)
        {
            PackedGemm.PackInput(pdy, m, rows, pp);
            // Two threads' slices: the first overwrites, the second accumulates.
            layer.InputGradientColumnsPacked(pp, m, po, 0, split, false, ps);
            layer.InputGradientColumnsPacked(pp, m, po, split, k, true, ps);
            layer.InputGradientColumns(pdy, m, pst, 0, split, false);
            layer.InputGradientColumns(pdy, m, pst, split, k, true);
        }

        // Every tile width (Vector512 runs in software where the hardware lacks it), through the dense F32 entry point.
        var widths = new Dictionary<int, float[]>();
        if (dtype == TensorDType.F32)
        {
            foreach (var width in new[] { 48, 24, 0 })
            {
                var result = (float[])initial.Clone();
                fixed (float* pp = packed, ps = scratch, pr = result)
                fixed (byte* pw = bytes)
                {
                    InputGradientGemm.Compute<DenseRows<F32Format>>(pp, m, rows, k, pw, pr, 0, split, false, ps, width);
                    InputGradientGemm.Compute<DenseRows<F32Format>>(pp, m, rows, k, pw, pr, split, k, true, ps, width);
                }

                widths[width] = result;
            }
        }

        for (var t = 0; t < m; t++)
        {
            for (var c = 0; c < k; c++)
            {
                double sum = c >= split ? initial[(t * k) + c] : 0, magnitude = Math.Abs(sum);
                for (var r = 0; r < rows; r++)
                {
                    var p = dy[(t * rows) + r] * w[(r * k) + c];
                    sum += p;
                    magnitude += Math.Abs(p);
                }

                var bound = (2e-6 * magnitude) + 1e-30;
                Assert.True(Math.Abs(ours[(t * k) + c] - sum) <= bound, $"{dtype}: dx[{t},{c}] = {ours[(t * k) + c]}, reference {sum}.");
                Assert.True(Math.Abs(streaming[(t * k) + c] - sum) <= bound, $"{dtype} streaming: dx[{t},{c}] = {streaming[(t * k) + c]}, reference {sum}.");
                foreach (var (width, result) in widths)
                {
                    Assert.True(Math.Abs(result[(t * k) + c] - sum) <= bound, $"{dtype} tile width {width}: dx[{t},{c}] = {result[(t * k) + c]}, reference {sum}.");
                }
            }
        }
    }
}
