using System.Runtime.InteropServices;
using Petals.Backends.Cpu.Kernels;
using Petals.Backends.Cpu.Kernels.Quant;
using Petals.Backends.Cpu.Linear;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests.Quant;

/// <summary>Block decoders, the fused GEMV and the packed GEMM of every quantized format and path against a float64 dequantize-then-multiply reference.</summary>
public sealed unsafe class QuantKernelTests
{
    /// <summary>The kernel paths (<see cref="KernelPath"/>), public for theory data.</summary>
    public enum Lanes
    {
        Scalar = KernelPath.Scalar,
        Vector256 = KernelPath.Vector256,
        Vector512 = KernelPath.Vector512,
    }

    public static TheoryData<TensorDType, Lanes> FormatsAndPaths()
    {
        var data = new TheoryData<TensorDType, Lanes>();
        foreach (var f in ReferenceBlocks.Formats)
        {
            foreach (var p in Enum.GetValues<Lanes>())
            {
                data.Add(f, p);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(FormatsAndPaths))]
    public void DecodersEqualTheFloat64ReferenceExactly(TensorDType dtype, Lanes lanes)
    {
        var path = (KernelPath)lanes;
        Assert.SkipUnless(KernelPaths.IsSupported(path), $"{path} is not supported on this machine.");
        var random = new Random(17 + (int)dtype);
        const int blocks = 24;
        var bytes = ReferenceBlocks.RandomBlocks(dtype, blocks, random);
        var expected = ReferenceBlocks.Decode(dtype, bytes);
        var actual = new float[expected.Length];
        var layer = LinearLayers.Create("w", dtype, bytes, 1, expected.Length);
        fixed (byte* pb = bytes)
        fixed (float* pa = actual)
        {
            Widen(dtype, pb, expected.Length, pa, path);
        }

        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True((float)expected[i] == actual[i], $"{dtype} {path}: element {i} is {actual[i]}, expected {(float)expected[i]}.");
        }

        layer.Dispose();
    }

    [Theory]
    [MemberData(nameof(FormatsAndPaths))]
    public void GemvMatchesFloat64Reference(TensorDType dtype, Lanes lanes)
    {
        var path = (KernelPath)lanes;
        Assert.SkipUnless(KernelPaths.IsSupported(path), $"{path} is not supported on this machine.");
        var k = dtype.BlockElements() == 256 ? 1536 : 1088; // more than one 1024-element chunk, and a partial last chunk
        foreach (var m in new[] { 1, 3 })
        {
            CheckProduct(dtype, m, k, rows: 9, rowStart: 1, rowEnd: 8, accumulate: m == 3, path, packed: false, seed: m * 31);
        }
    }

    [Theory]
    [InlineData(TensorDType.Q8_0, 40)]
    [InlineData(TensorDType.Q4_0, 33)]
    [InlineData(TensorDType.Q4_1, 24)]
    [InlineData(TensorDType.Q5_0, 70)]
    [InlineData(TensorDType.Q5_1, 24)]
    [InlineData(TensorDType.Q2_K, 24)]
    [InlineData(TensorDType.Q3_K, 35)]
    [InlineData(TensorDType.Q4_K, 64)]
    [InlineData(TensorDType.Q5_K, 25)]
    [InlineData(TensorDType.Q6_K, 48)]
    [InlineData(TensorDType.NF4, 30)]
    public void PackedGemmMatchesFloat64Reference(TensorDType dtype, int m)
    {
        // 4352 columns: a full 4096 K block and a partial one, for every block size.
        CheckProduct(dtype, m, 4352, rows: 13, rowStart: 0, rowEnd: 13, accumulate: false, KernelPaths.Best, packed: true, seed: m);
        CheckProduct(dtype, m, 512, rows: 7, rowStart: 1, rowEnd: 7, accumulate: true, KernelPaths.Best, packed: true, seed: m + 1);
    }

    [Theory]
    [InlineData(Lanes.Scalar)]
    [InlineData(Lanes.Vector256)]
    [InlineData(Lanes.Vector512)]
    public void Int8RowsMatchFloat64Reference(Lanes lanes)
    {
        var path = (KernelPath)lanes;
        Assert.SkipUnless(KernelPaths.IsSupported(path), $"{path} is not supported on this machine.");
        const int rows = 6;
        const int k = 1043; // not a multiple of 16: the scalar tail runs too
        var random = new Random(5);
        var rowBytes = (int)Int8Rows.RowBytes(k);
        var data = new byte[rows * rowBytes];
        random.NextBytes(data);
        var expectedW = new double[rows * k];
        for (var r = 0; r < rows; r++)
        {
            var scale = (float)(0.001 + random.NextDouble() * 0.01);
            MemoryMarshal.Write(data.AsSpan(r * rowBytes), scale);
            for (var i = 0; i < k; i++)
            {
                expectedW[(r * k) + i] = scale * (double)(sbyte)data[(r * rowBytes) + 4 + i];
            }
        }

        var x = RandomFloats(random, 2 * k);
        var y = new float[2 * rows];
        fixed (byte* pw = data)
        fixed (float* px = x, py = y)
        {
            QuantKernels.Gemv<Int8Rows>(pw, k, px, 2, py, rows, 0, rows, false, path);
        }

        if (path == KernelPath.Scalar || k % 32 != 0)
        {
            AssertProduct(expectedW, x, y, 2, k, rows, 0, rows, null, "int8 " + path);
        }
        else
        {
            AssertFusedProduct(expectedW, x, y, 2, k, rows, 0, rows, null, "int8 " + path);
        }
    }

    [Theory]
    [MemberData(nameof(FormatsAndPaths))]
    public void InputGradientMatchesFloat64Reference(TensorDType dtype, Lanes lanes)
    {
        var path = (KernelPath)lanes;
        Assert.SkipUnless(KernelPaths.IsSupported(path), $"{path} is not supported on this machine.");
        var be = dtype.BlockElements();
        var k = be == 256 ? 1536 : 1088;
        const int rows = 9;
        const int m = 3;
        var random = new Random(41 + (int)dtype);
        var bytes = ReferenceBlocks.RandomBlocks(dtype, rows * (k / be), random);
        var w = ReferenceBlocks.Decode(dtype, bytes);
        var dy = RandomFloats(random, m * rows);
        var initial = RandomFloats(random, m * k);
        using var layer = LinearLayers.Create("w", dtype, bytes, rows, k);
        Assert.Equal(be, layer.ColumnAlignment);
        // Two column slices on block boundaries, as two threads would take them: the first overwrites, the second accumulates.
        var split = k / be / 2 * be;
        var dx = (float[])initial.Clone();
        fixed (byte* pw = bytes)
        fixed (float* pdy = dy, pdx = dx)
        {
            InputGradient(dtype, pw, rows, k, pdy, m, pdx, 0, split, false, path);
            InputGradient(dtype, pw, rows, k, pdy, m, pdx, split, k, true, path);
        }

        // The layer's entry point (the best path here) gives the same columns.
        var viaLayer = (float[])initial.Clone();
        fixed (float* pdy = dy, pdx = viaLayer)
        {
            layer.InputGradientColumns(pdy, m, pdx, 0, split, false);
            layer.InputGradientColumns(pdy, m, pdx, split, k, true);
        }

        if (path == KernelPaths.Best)
        {
            Assert.Equal(dx, viaLayer);
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

                var actual = dx[(t * k) + c];
                Assert.True(Math.Abs(actual - sum) <= (1e-6 * magnitude) + 1e-30, $"{dtype} {path}: dx[{t},{c}] = {actual}, reference {sum}.");
            }
        }
    }

    [Theory]
    [InlineData(TensorDType.F32)]
    [InlineData(TensorDType.BF16)]
    [InlineData(TensorDType.F16)]
    public void DenseInputGradientMatchesFloat64Reference(TensorDType dtype)
    {
        const int rows = 7;
        const int k = 1043; // more than one chunk, odd tail
        const int m = 2;
        var random = new Random(9);
        var values = RandomFloats(random, rows * k);
        var bytes = new byte[dtype.ByteSize(values.Length)];
        BlockQuantization.Quantize(dtype, values, bytes);
        var w = new float[values.Length];
        BlockQuantization.Dequantize(dtype, bytes, w);
        var dy = RandomFloats(random, m * rows);
        var dx = new float[m * k];
        using var layer = LinearLayers.Create("w", dtype, bytes, rows, k);
        Assert.Equal(1, layer.ColumnAlignment);
        fixed (float* pdy = dy, pdx = dx)
        {
            layer.InputGradientColumns(pdy, m, pdx, 0, 500, false);
            layer.InputGradientColumns(pdy, m, pdx, 500, k, false);
        }

        for (var t = 0; t < m; t++)
        {
            for (var c = 0; c < k; c++)
            {
                double sum = 0, magnitude = 0;
                for (var r = 0; r < rows; r++)
                {
                    sum += (double)dy[(t * rows) + r] * w[(r * k) + c];
                    magnitude += Math.Abs((double)dy[(t * rows) + r] * w[(r * k) + c]);
                }

                Assert.True(Math.Abs(dx[(t * k) + c] - sum) <= (1e-6 * magnitude) + 1e-30, $"{dtype}: dx[{t},{c}] = {dx[(t * k) + c]}, reference {sum}.");
            }
        }
    }

    [Fact]
    public void DequantizeRowOfEveryLayerEqualsTheReference()
    {
        foreach (var dtype in ReferenceBlocks.Formats)
        {
            var k = dtype.BlockElements() * 3;
            var bytes = ReferenceBlocks.RandomBlocks(dtype, 3 * 4, new Random((int)dtype));
            var expected = ReferenceBlocks.Decode(dtype, bytes);
            using var layer = LinearLayers.Create("w", dtype, bytes, 4, k);
            Assert.Equal(dtype, layer.DType);
            Assert.Equal(bytes.Length, layer.StoredBytes);
            var row = new float[k];
            fixed (float* pr = row)
            {
                layer.DequantizeRow(2, pr);
            }

            for (var i = 0; i < k; i++)
            {
                Assert.Equal((float)expected[(2 * k) + i], row[i]);
            }
        }
    }

    [Fact]
    public void LayerRejectsDataOfTheWrongSize()
    {
        var bytes = new byte[(TensorDType.Q4_K.BlockBytes() * 2) - 1];
        var ex = Assert.Throws<ArgumentException>(() => LinearLayers.Create("blk.w", TensorDType.Q4_K, bytes, 1, 512));
        Assert.Contains("blk.w", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Q4_K", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>Calls <paramref name="call"/>'s generic method with the format struct of <paramref name="dtype"/>.</summary>
    private static void Dispatch<TCall>(TensorDType dtype, TCall call)
        where TCall : IFormatCall
    {
        switch (dtype)
        {
            case TensorDType.Q8_0: call.Run<Q8_0Format>(); break;
            case TensorDType.Q4_0: call.Run<Q4_0Format>(); break;
            case TensorDType.Q4_1: call.Run<Q4_1Format>(); break;
            case TensorDType.Q5_0: call.Run<Q5_0Format>(); break;
            case TensorDType.Q5_1: call.Run<Q5_1Format>(); break;
            case TensorDType.Q2_K: call.Run<Q2_KFormat>(); break;
            case TensorDType.Q3_K: call.Run<Q3_KFormat>(); break;
            case TensorDType.Q4_K: call.Run<Q4_KFormat>(); break;
            case TensorDType.Q5_K: call.Run<Q5_KFormat>(); break;
            case TensorDType.Q6_K: call.Run<Q6_KFormat>(); break;
            case TensorDType.NF4: call.Run<Nf4Format>(); break;
            default: throw new ArgumentException(dtype.ToString());
        }
    }

    private static void Widen(TensorDType dtype, byte* src, int count, float* dst, KernelPath path) =>
        Dispatch(dtype, new WidenCall(src, count, dst, path));

    private static void Gemv(TensorDType dtype, byte* w, int k, float* x, int m, float* y, int ldy, int r0, int r1, bool acc, KernelPath path) =>
        Dispatch(dtype, new GemvCall(w, k, x, m, y, ldy, r0, r1, acc, path));

    private static void InputGradient(TensorDType dtype, byte* w, int rows, int k, float* dy, int m, float* dx, int c0, int c1, bool acc, KernelPath path) =>
        Dispatch(dtype, new InputGradientCall(w, rows, k, dy, m, dx, c0, c1, acc, path));

    private interface IFormatCall
    {
        void Run<TQ>()
            where TQ : struct, IQuantFormat;
    }

    private readonly struct WidenCall(byte* src, int count, float* dst, KernelPath path) : IFormatCall
    {
        public void Run<TQ>()
            where TQ : struct, IQuantFormat => QuantKernels.Dequantize<TQ>(src, 0, count, dst, path);
    }

    private readonly struct GemvCall(byte* w, int k, float* x, int m, float* y, int ldy, int r0, int r1, bool acc, KernelPath path) : IFormatCall
    {
        public void Run<TQ>()
            where TQ : struct, IQuantFormat => QuantKernels.Gemv<QuantRows<TQ>>(w, k, x, m, y, ldy, r0, r1, acc, path);
    }

    private readonly struct InputGradientCall(byte* w, int rows, int k, float* dy, int m, float* dx, int c0, int c1, bool acc, KernelPath path) : IFormatCall
    {
        public void Run<TQ>()
            where TQ : struct, IQuantFormat => QuantKernels.InputGradient<QuantRows<TQ>>(w, rows, k, dy, m, dx, c0, c1, acc, path);
    }

    private static void CheckProduct(TensorDType dtype, int m, int k, int rows, int rowStart, int rowEnd, bool accumulate, KernelPath path, bool packed, int seed)
    {
        var random = new Random(seed + (int)dtype);
        var blocksPerRow = k / dtype.BlockElements();
        var bytes = ReferenceBlocks.RandomBlocks(dtype, rows * blocksPerRow, random);
        var w = ReferenceBlocks.Decode(dtype, bytes);
        var x = RandomFloats(random, m * k);
        var initial = RandomFloats(random, m * rows);
        var y = (float[])initial.Clone();
        using var layer = LinearLayers.Create("w", dtype, bytes, rows, k);
        fixed (byte* pw = bytes)
        fixed (float* px = x, py = y)
        {
            if (packed)
            {
                var xp = new float[PackedGemm.PackedSize(m, k)];
                var scratch = new float[PackedGemm.ScratchFloats];
                fixed (float* pxp = xp, ps = scratch)
                {
                    PackedGemm.PackInput(px, m, k, pxp);
                    layer.ForwardRowsPacked(pxp, m, py, rows, rowStart, rowEnd, accumulate, ps);
                }
            }
            else
            {
                Gemv(dtype, pw, k, px, m, py, rows, rowStart, rowEnd, accumulate, path);
            }
        }

        var what = $"{dtype} {path} packed={packed} m={m}";
        if (!packed && path != KernelPath.Scalar && Fused.Contains(dtype))
        {
            AssertFusedProduct(w, x, y, m, k, rows, rowStart, rowEnd, accumulate ? initial : null, what);
        }
        else
        {
            AssertProduct(w, x, y, m, k, rows, rowStart, rowEnd, accumulate ? initial : null, what);
        }

        for (var t = 0; t < m; t++)
        {
            for (var r = 0; r < rows; r++)
            {
                if (r < rowStart || r >= rowEnd)
                {
                    Assert.Equal(initial[(t * rows) + r], y[(t * rows) + r]);
                }
            }
        }
    }

    /// <summary>The formats whose vector paths multiply with int8-quantized inputs (<c>Q8Activations</c>).</summary>
    private static readonly TensorDType[] Fused = [TensorDType.Q2_K, TensorDType.Q3_K, TensorDType.Q8_0, TensorDType.Q4_0, TensorDType.Q4_1, TensorDType.Q5_0, TensorDType.Q5_1, TensorDType.Q4_K, TensorDType.Q5_K, TensorDType.Q6_K];

    /// <summary>
    /// The fused kernels quantize each block of 32 inputs to int8 (scale max|x|/127, round half to even, in fp32 as they
    /// do). Checked twice: against the product with those quantized inputs, to fp32 accumulation accuracy (the kernel is
    /// exact apart from its summation order), and against the true product within the stated quantization bound
    /// <c>sum_b dx_b / 2 * sum_(i in b) |w_i|</c>.
    /// </summary>
    private static void AssertFusedProduct(double[] w, float[] x, float[] y, int m, int k, int rows, int rowStart, int rowEnd, float[]? initial, string what)
    {
        for (var t = 0; t < m; t++)
        {
            var xq = new double[k];
            var half = new double[k];
            for (var b = 0; b < k / 32; b++)
            {
                var amax = 0f;
                for (var i = 0; i < 32; i++)
                {
                    amax = MathF.Max(amax, MathF.Abs(x[(t * k) + (b * 32) + i]));
                }

                var d = amax / 127f;
                var inv = d > 0 ? 1f / d : 0f;
                for (var i = 0; i < 32; i++)
                {
                    xq[(b * 32) + i] = MathF.Round(x[(t * k) + (b * 32) + i] * inv, MidpointRounding.ToEven) * (double)d;
                    half[(b * 32) + i] = d / 2.0;
                }
            }

            for (var r = rowStart; r < rowEnd; r++)
            {
                double quantized = initial?[(t * rows) + r] ?? 0, exact = quantized, magnitude = Math.Abs(quantized), bound = 0;
                for (var i = 0; i < k; i++)
                {
                    var wi = w[(r * k) + i];
                    quantized += wi * xq[i];
                    exact += wi * x[(t * k) + i];
                    magnitude += Math.Abs(wi * xq[i]);
                    bound += Math.Abs(wi) * half[i];
                }

                var actual = y[(t * rows) + r];
                var rounding = (1e-6 * magnitude) + 1e-30;
                Assert.True(Math.Abs(actual - quantized) <= rounding, $"{what}: y[{t},{r}] = {actual}, product with the int8 inputs {quantized} (bound {rounding}).");
                Assert.True(Math.Abs(actual - exact) <= bound + rounding, $"{what}: y[{t},{r}] = {actual}, exact {exact}, beyond the quantization bound {bound}.");
            }
        }
    }

    private static void AssertProduct(double[] w, float[] x, float[] y, int m, int k, int rows, int rowStart, int rowEnd, float[]? initial, string what)
    {
        for (var t = 0; t < m; t++)
        {
            for (var r = rowStart; r < rowEnd; r++)
            {
                double sum = initial?[(t * rows) + r] ?? 0, magnitude = Math.Abs(sum);
                for (var i = 0; i < k; i++)
                {
                    var p = w[(r * k) + i] * x[(t * k) + i];
                    sum += p;
                    magnitude += Math.Abs(p);
                }

                // fp32 accumulation of k products: a few ulps of the magnitude per partial sum.
                var bound = (1e-6 * magnitude) + 1e-30;
                var actual = y[(t * rows) + r];
                Assert.True(Math.Abs(actual - sum) <= bound, $"{what}: y[{t},{r}] = {actual}, reference {sum}, bound {bound}.");
            }
        }
    }

    private static float[] RandomFloats(Random random, int n)
    {
        var a = new float[n];
        for (var i = 0; i < n; i++)
        {
            a[i] = (float)((random.NextDouble() * 2) - 1);
        }

        return a;
    }
}
