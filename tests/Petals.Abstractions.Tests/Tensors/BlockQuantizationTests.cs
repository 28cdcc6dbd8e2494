using System.Buffers.Binary;
using System.Globalization;
using FsCheck;
using FsCheck.Fluent;
using Petals.Tensors;

namespace Petals.Abstractions.Tests.Tensors;

public sealed class BlockQuantizationTests(ITestOutputHelper output)
{
    private static readonly TensorDType[] Quantized =
    [
        TensorDType.Q8_0, TensorDType.Q4_0, TensorDType.Q4_1, TensorDType.Q5_0, TensorDType.Q5_1,
        TensorDType.Q2_K, TensorDType.Q3_K, TensorDType.Q4_K, TensorDType.Q5_K, TensorDType.Q6_K, TensorDType.NF4,
    ];

    public static TheoryData<TensorDType> QuantizedTypes => [.. Quantized];

    /// <summary>Upper bounds of RMSE / RMS on standard normal data (measured values are printed; bounds leave room).</summary>
    public static TheoryData<TensorDType, double> RelativeErrorBounds => new()
    {
        { TensorDType.Q8_0, 0.006 }, { TensorDType.Q6_K, 0.02 }, { TensorDType.Q5_K, 0.04 }, { TensorDType.Q5_0, 0.045 },
        { TensorDType.Q5_1, 0.04 }, { TensorDType.Q4_K, 0.08 }, { TensorDType.Q4_0, 0.1 }, { TensorDType.Q4_1, 0.09 },
        { TensorDType.NF4, 0.1 }, { TensorDType.Q3_K, 0.2 }, { TensorDType.Q2_K, 0.4 },
    };

    [Fact]
    public void Nf4LevelsAreQLoRAsSixteenAscendingNormalFloatLevels()
    {
        var levels = BlockQuantization.Nf4Levels;
        Assert.Equal(16, levels.Length);
        Assert.Equal(-1f, levels[0]);
        Assert.Equal(0f, levels[7]);
        Assert.Equal(1f, levels[15]);
        for (var i = 1; i < 16; i++)
        {
            Assert.True(levels[i] > levels[i - 1]);
        }

        // The positive half is denser near zero, like the quantiles of a normal distribution.
        Assert.Equal(0.07958029955625534f, levels[8]);
        Assert.Equal(-0.6961928009986877f, levels[1]);
    }

    [Theory]
    [MemberData(nameof(RelativeErrorBounds))]
    public void RoundTripErrorOnGaussianDataIsBounded(TensorDType dtype, double bound)
    {
        var x = Gaussian(64 * 256, seed: 7);
        var y = RoundTrip(dtype, x);
        var rel = Rmse(x, y) / Math.Sqrt(x.Select(v => (double)v * v).Average());
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{dtype}: RMSE/RMS {rel:F4} (bound {bound})"));
        Assert.True(rel <= bound, $"{dtype}: relative RMSE {rel}");
    }

    [Fact]
    public void Nf4ErrorOfEveryValueIsAtMostHalfTheWidestLevelGapTimesItsBlockScale()
    {
        var x = Gaussian(64 * 64, seed: 3);
        var y = RoundTrip(TensorDType.NF4, x);
        var levels = BlockQuantization.Nf4Levels;
        var gap = 0f;
        for (var i = 1; i < 16; i++)
        {
            gap = Math.Max(gap, levels[i] - levels[i - 1]);
        }

        for (var b = 0; b < x.Length / 64; b++)
        {
            var absmax = x.AsSpan(b * 64, 64).ToArray().Max(Math.Abs);
            var d = (float)(Half)absmax;
            for (var i = b * 64; i < (b + 1) * 64; i++)
            {
                Assert.True(Math.Abs(x[i] - y[i]) <= (absmax * gap / 2 * 1.001) + 1e-6, $"element {i}: {x[i]} -> {y[i]}");

                // The nearest level: no other level of the block decodes closer to the value.
                foreach (var level in levels)
                {
                    Assert.True(Math.Abs(x[i] - y[i]) <= Math.Abs(x[i] - (level * d)) + 1e-6, $"element {i}: {x[i]} -> {y[i]}, but level {level} gives {level * d}");
                }
            }

            // The largest magnitude is exact up to the fp16 rounding of the scale.
            var at = Array.IndexOf(x, x.AsSpan(b * 64, 64).ToArray().MaxBy(Math.Abs), b * 64);
            Assert.Equal(x[at], y[at], absmax * 1e-3f);
        }
    }

    [Fact]
    public void Nf4EncodesTableLevelsTimesAnFp16ScaleExactly()
    {
        var x = new float[64];
        for (var i = 0; i < 64; i++)
        {
            x[i] = BlockQuantization.Nf4Levels[i % 16] * 0.5f;
        }

        Assert.Equal(x, RoundTrip(TensorDType.NF4, x));
        var bytes = new byte[34];
        BlockQuantization.Quantize(TensorDType.NF4, x, bytes);
        Assert.Equal(0x3800, BinaryPrimitives.ReadUInt16LittleEndian(bytes)); // fp16 0.5
        Assert.Equal(0x00, bytes[2]); // elements 0 and 32: code 0
        Assert.Equal(0x11, bytes[3]); // elements 1 and 33: code 1 in the low and the high nibble
        Assert.Equal(0xFF, bytes[2 + 15]);
    }

    [Fact]
    public void Q8_0RoundsTiesAwayFromZeroLikeCsRoundf()
    {
        // amax 127 gives d = 1 exactly, so x * (1 / d) = x and every .5 is a tie.
        var x = new float[32];
        float[] ties = [0.5f, -0.5f, 1.5f, -2.5f, 2.5f, 126.5f, -0.49999997f, 0.49999997f];
        ties.CopyTo(x, 0);
        x[31] = 127f;
        var bytes = new byte[34];
        BlockQuantization.Quantize(TensorDType.Q8_0, x, bytes);
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(bytes)); // fp16 1.0
        Assert.Equal(new sbyte[] { 1, -1, 2, -3, 3, 127, 0, 0 }, bytes.AsSpan(2, 8).ToArray().Select(b => (sbyte)b));
        Assert.Equal(127, (sbyte)bytes[33]);
    }

    [Theory]
    [MemberData(nameof(QuantizedTypes))]
    public void ZerosStayZerosAndAConstantBlockStaysClose(TensorDType dtype)
    {
        var zeros = new float[dtype.BlockElements() * 2];
        Assert.All(RoundTrip(dtype, zeros), v => Assert.Equal(0f, v));
        var constant = Enumerable.Repeat(0.75f, dtype.BlockElements()).ToArray();
        Assert.All(RoundTrip(dtype, constant), v => Assert.Equal(0.75f, v, 0.75f * 0.02f));
    }

    [Theory]
    [MemberData(nameof(QuantizedTypes))]
    public void LengthMismatchesAndNonFiniteInputsAreRejectedPrecisely(TensorDType dtype)
    {
        var be = dtype.BlockElements();
        var bb = dtype.BlockBytes();
        var ex = Assert.Throws<ArgumentException>(() => BlockQuantization.Dequantize(dtype, new byte[bb], new float[be + 1]));
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"block size {be}"), ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => BlockQuantization.Dequantize(dtype, new byte[bb - 1], new float[be]));
        Assert.Equal("source", ex.ParamName);
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"{bb - 1} bytes"), ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => BlockQuantization.Quantize(dtype, new float[be], new byte[bb + 1]));
        Assert.Equal("destination", ex.ParamName);

        var x = Gaussian(2 * be, seed: 1);
        x[be + 3] = float.NaN;
        ex = Assert.Throws<ArgumentException>(() => BlockQuantization.Quantize(dtype, x, new byte[2 * bb]));
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"Element {be + 3} is NaN"), ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TypesWithoutFloatCodingAreRejected()
    {
        Assert.Throws<NotSupportedException>(() => BlockQuantization.Quantize(TensorDType.I8, new float[4], new byte[4]));
        var ex = Assert.Throws<ArgumentException>(() => BlockQuantization.Dequantize(TensorDType.I32, new byte[4], new float[1]));
        Assert.Contains("I32", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => BlockQuantization.TryFindNonFiniteScale(TensorDType.I64, new byte[8], out _, out _));
    }

    [Theory]
    [InlineData(TensorDType.F32)]
    [InlineData(TensorDType.F16)]
    [InlineData(TensorDType.BF16)]
    public void FloatTypesRoundTripAsConversions(TensorDType dtype)
    {
        var x = Gaussian(64, seed: 5);
        var y = RoundTrip(dtype, x);
        for (var i = 0; i < x.Length; i++)
        {
            var expected = dtype switch
            {
                TensorDType.F16 => (float)(Half)x[i],
                TensorDType.BF16 => BitConverter.Int32BitsToSingle((int)((BitConverter.SingleToUInt32Bits(x[i]) + 0x7FFF + ((BitConverter.SingleToUInt32Bits(x[i]) >> 16) & 1)) & 0xFFFF0000)),
                _ => x[i],
            };
            Assert.Equal(expected, y[i]);
        }
    }

    public static TheoryData<TensorDType, int, string> ScaleFields => new()
    {
        { TensorDType.Q8_0, 0, "d" }, { TensorDType.Q4_0, 0, "d" }, { TensorDType.Q5_0, 0, "d" }, { TensorDType.NF4, 0, "d" },
        { TensorDType.Q4_1, 0, "d" }, { TensorDType.Q4_1, 2, "m" }, { TensorDType.Q5_1, 0, "d" }, { TensorDType.Q5_1, 2, "m" },
        { TensorDType.Q4_K, 0, "d" }, { TensorDType.Q4_K, 2, "dmin" }, { TensorDType.Q5_K, 0, "d" }, { TensorDType.Q5_K, 2, "dmin" },
        { TensorDType.Q2_K, 80, "d" }, { TensorDType.Q2_K, 82, "dmin" }, { TensorDType.Q3_K, 108, "d" }, { TensorDType.Q6_K, 208, "d" },
        { TensorDType.F16, 0, "value" }, { TensorDType.BF16, 0, "value" },
    };

    [Theory]
    [MemberData(nameof(ScaleFields))]
    public void NonFiniteScalesAreFoundWithBlockAndField(TensorDType dtype, int offset, string field)
    {
        var blocks = 5;
        var x = Gaussian(blocks * dtype.BlockElements(), seed: 11);
        var bytes = new byte[dtype.ByteSize(x.Length)];
        BlockQuantization.Quantize(dtype, x, bytes);
        Assert.False(BlockQuantization.TryFindNonFiniteScale(dtype, bytes, out var none, out var noField));
        Assert.Equal(-1, none);
        Assert.Equal(string.Empty, noField);

        var bb = dtype.BlockBytes();
        var bad = dtype == TensorDType.BF16 ? (ushort)0x7F80 : (ushort)0xFE00; // +Inf bf16, NaN fp16
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan((3 * bb) + offset), bad);
        Assert.True(BlockQuantization.TryFindNonFiniteScale(dtype, bytes, out var block, out var found));
        Assert.Equal(3, block);
        Assert.Equal(field, found);
    }

    [Fact]
    public void AnyNonFiniteHalfInAnyScaleFieldOfAnyBlockIsFound()
    {
        var types = new[] { TensorDType.Q8_0, TensorDType.Q4_1, TensorDType.Q2_K, TensorDType.Q3_K, TensorDType.Q4_K, TensorDType.Q6_K, TensorDType.NF4 };
        var fields = new Dictionary<TensorDType, (int, string)[]>
        {
            [TensorDType.Q8_0] = [(0, "d")], [TensorDType.Q4_1] = [(0, "d"), (2, "m")], [TensorDType.Q2_K] = [(80, "d"), (82, "dmin")],
            [TensorDType.Q3_K] = [(108, "d")], [TensorDType.Q4_K] = [(0, "d"), (2, "dmin")], [TensorDType.Q6_K] = [(208, "d")], [TensorDType.NF4] = [(0, "d")],
        };
        var gen =
            from t in Gen.Elements(types)
            from blocks in Gen.Choose(1, 6)
            from block in Gen.Choose(0, blocks - 1)
            from f in Gen.Choose(0, fields[t].Length - 1)
            from mantissa in Gen.Choose(0, 0x3FF)
            from sign in Gen.Elements(0, 0x8000)
            select (t, blocks, block, f, (ushort)(0x7C00 | mantissa | sign));
        Prop.ForAll(gen.ToArbitrary(), c =>
        {
            var (t, blocks, block, f, bits) = c;
            var bytes = new byte[blocks * t.BlockBytes()];
            BlockQuantization.Quantize(t, Gaussian(blocks * t.BlockElements(), seed: blocks), bytes);
            var (offset, name) = fields[t][f];
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan((block * t.BlockBytes()) + offset), bits);
            return BlockQuantization.TryFindNonFiniteScale(t, bytes, out var at, out var field) && at == block && field == name;
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void TryFindNonFiniteScaleRejectsPartialBlocks()
    {
        var ex = Assert.Throws<ArgumentException>(() => BlockQuantization.TryFindNonFiniteScale(TensorDType.Q4_K, new byte[145], out _, out _));
        Assert.Contains("145 bytes", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Int8RowsRoundTripWithinHalfTheirScale()
    {
        const int rows = 7, columns = 300;
        var w = Gaussian(rows * columns, seed: 9);
        w[(2 * columns) + 5] = 40f; // an outlier only widens its own row's scale
        Array.Clear(w, 4 * columns, columns); // a row of zeros
        var q = new sbyte[w.Length];
        var scales = new float[rows];
        BlockQuantization.QuantizeRowsInt8(w, rows, columns, q, scales);
        var y = new float[w.Length];
        BlockQuantization.DequantizeRowsInt8(q, scales, rows, columns, y);
        for (var r = 0; r < rows; r++)
        {
            var row = w.AsSpan(r * columns, columns).ToArray();
            Assert.Equal(row.Max(Math.Abs) / 127f, scales[r]);
            Assert.Contains(q.AsSpan(r * columns, columns).ToArray(), v => Math.Abs((int)v) == (r == 4 ? 0 : 127));
            for (var c = 0; c < columns; c++)
            {
                var i = (r * columns) + c;
                Assert.True(Math.Abs(w[i] - y[i]) <= (scales[r] * 0.5f * 1.0001f) + 1e-7f, $"row {r} column {c}: {w[i]} -> {y[i]}");
            }
        }

        Assert.Equal(0f, scales[4]);
        Assert.True(scales[2] > 5 * scales[1]);
    }

    [Fact]
    public void Int8RowsRejectBadShapesAndNonFiniteValues()
    {
        var w = new float[6];
        var ex = Assert.Throws<ArgumentException>(() => BlockQuantization.QuantizeRowsInt8(w, 2, 4, new sbyte[8], new float[2]));
        Assert.Equal("weights", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => BlockQuantization.QuantizeRowsInt8(w, 2, 3, new sbyte[6], new float[3]));
        Assert.Equal("rowScales", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => BlockQuantization.DequantizeRowsInt8(new sbyte[5], new float[2], 2, 3, new float[6]));
        Assert.Equal("values", ex.ParamName);
        w[4] = float.PositiveInfinity;
        ex = Assert.Throws<ArgumentException>(() => BlockQuantization.QuantizeRowsInt8(w, 2, 3, new sbyte[6], new float[2]));
        Assert.Contains("Row 1", ex.Message, StringComparison.Ordinal);
    }

    internal static float[] Gaussian(int n, int seed)
    {
        var random = new Random(seed);
        var x = new float[n];
        for (var i = 0; i < n; i++)
        {
            x[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        }

        return x;
    }

    private static float[] RoundTrip(TensorDType dtype, float[] x)
    {
        var bytes = new byte[dtype.ByteSize(x.Length)];
        BlockQuantization.Quantize(dtype, x, bytes);
        var y = new float[x.Length];
        BlockQuantization.Dequantize(dtype, bytes, y);
        return y;
    }

    private static double Rmse(float[] x, float[] y) => Math.Sqrt(x.Zip(y, (a, b) => (double)(a - b) * (a - b)).Average());
}
