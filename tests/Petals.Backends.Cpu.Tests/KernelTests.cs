using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Petals.Backends.Cpu.Kernels;

namespace Petals.Backends.Cpu.Tests;

/// <summary>The linear kernels for each dtype against a scalar float64 loop.</summary>
public sealed unsafe class KernelTests
{
    public enum Fmt
    {
        F32,
        Bf16,
        F16,
        Bf16Pairs,
    }

    [Theory]
    [InlineData(Fmt.F32, 1, 64, 12)]
    [InlineData(Fmt.F32, 7, 37, 13)]
    [InlineData(Fmt.F32, 9, 2100, 9)]
    [InlineData(Fmt.Bf16, 1, 4099, 11)]
    [InlineData(Fmt.Bf16, 5, 48, 8)]
    [InlineData(Fmt.Bf16, 13, 2048, 6)]
    [InlineData(Fmt.F16, 1, 31, 5)]
    [InlineData(Fmt.F16, 8, 520, 17)]
    [InlineData(Fmt.F16, 6, 2049, 4)]
    public void ComputeMatchesScalarLoop(Fmt fmt, int m, int k, int n)
    {
        Check(fmt, m, k, n, rowStart: 0, rowEnd: n, accumulate: false, seed: m + k + n);
        Check(fmt, m, k, n, rowStart: 1, rowEnd: n - 1, accumulate: true, seed: m * k);
    }

    [Theory]
    [InlineData(1, 4096, 12)]
    [InlineData(1, 31, 5)]
    [InlineData(2, 33, 9)]
    [InlineData(3, 4099, 7)]
    [InlineData(1, 96, 4)]
    public void Bf16PairKernelMatchesScalarLoop(int m, int k, int n)
    {
        Check(Fmt.Bf16Pairs, m, k, n, rowStart: 0, rowEnd: n, accumulate: false, seed: m + k + n);
        Check(Fmt.Bf16Pairs, m, k, n, rowStart: 1, rowEnd: n - 1, accumulate: true, seed: m * k);
    }

    [Theory]
    [InlineData(Fmt.F32, 1, 64, 12)]
    [InlineData(Fmt.F32, 33, 37, 13)]
    [InlineData(Fmt.F32, 40, 4100, 7)]
    [InlineData(Fmt.Bf16, 32, 4099, 11)]
    [InlineData(Fmt.Bf16, 64, 48, 8)]
    [InlineData(Fmt.F16, 5, 31, 5)]
    [InlineData(Fmt.F16, 70, 520, 17)]
    [InlineData(Fmt.Bf16, 300, 40, 7)]
    [InlineData(Fmt.F32, 257, 4097, 13)]
    public void PackedGemmMatchesScalarLoop(Fmt fmt, int m, int k, int n)
    {
        Check(fmt, m, k, n, rowStart: 0, rowEnd: n, accumulate: false, seed: m + k + n, packed: true);
        Check(fmt, m, k, n, rowStart: 1, rowEnd: n - 1, accumulate: true, seed: m * k, packed: true);
    }

    [Fact]
    public void ComputeMatchesScalarLoopForRandomShapes()
    {
        Prop.ForAll(
            Gen.Choose(1, 9).ToArbitrary(),
            Gen.Choose(1, 300).ToArbitrary(),
            Gen.Choose(1, 20).ToArbitrary(),
            (m, k, n) =>
            {
                foreach (var fmt in Enum.GetValues<Fmt>())
                {
                    Check(fmt, m, k, n, 0, n, accumulate: (m + k) % 2 == 0, seed: k);
                    if (fmt != Fmt.Bf16Pairs)
                    {
                        Check(fmt, m * 5, k, n, 0, n, accumulate: (m + k) % 2 == 1, seed: k, packed: true);
                    }
                }
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void F16FiniteWideningIsExactForEveryFiniteBitPatternAndTheScanFindsEveryOtherOne()
    {
        var finite = new List<ushort>();
        for (var i = 0; i < 65536; i++)
        {
            var h = (ushort)i;
            var one = new[] { h, h, h, h, h, h, h, h, h, h, h, h, h, h, h, h, h };
            var isFinite = (h & 0x7c00) != 0x7c00;
            Assert.Equal(isFinite, F16FiniteFormat.AllFinite(System.Runtime.InteropServices.MemoryMarshal.AsBytes(one.AsSpan(0, 1))));
            if (isFinite)
            {
                finite.Add(h);
            }
        }

        // A non-finite value anywhere (vector body or scalar tail) is found; an all-finite buffer passes.
        var buffer = finite.ToArray();
        Assert.True(F16FiniteFormat.AllFinite(System.Runtime.InteropServices.MemoryMarshal.AsBytes(buffer.AsSpan())));
        foreach (var at in new[] { 0, 17, buffer.Length - 1 })
        {
            var copy = (ushort[])buffer.Clone();
            copy[at] = 0xfc00;
            Assert.False(F16FiniteFormat.AllFinite(System.Runtime.InteropServices.MemoryMarshal.AsBytes(copy.AsSpan())));
        }

        var padded = new ushort[(buffer.Length + 15) / 16 * 16];
        buffer.CopyTo(padded, 0);
        fixed (ushort* p = padded)
        {
            for (var i = 0; i < buffer.Length; i += 16)
            {
                var v16 = F16FiniteFormat.Load16((byte*)(p + i));
                var v8 = F16FiniteFormat.Load8((byte*)(p + i));
                for (var j = 0; j < 16 && i + j < buffer.Length; j++)
                {
                    var expected = (float)BitConverter.UInt16BitsToHalf(padded[i + j]);
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(v16[j]), $"0x{padded[i + j]:x4}: {v16[j]}, expected {expected}");
                    if (j < 8)
                    {
                        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(v8[j]), $"0x{padded[i + j]:x4} (8 lanes): {v8[j]}, expected {expected}");
                    }
                }
            }
        }
    }

    [Fact]
    public void F16WideningIsExactForEveryBitPattern()
    {
        var bits = new ushort[65536];
        for (var i = 0; i < bits.Length; i++)
        {
            bits[i] = (ushort)i;
        }

        fixed (ushort* p = bits)
        {
            for (var i = 0; i < bits.Length; i += 16)
            {
                var v16 = F16Format.Load16((byte*)(p + i));
                var v8 = F16Format.Load8((byte*)(p + i));
                for (var j = 0; j < 16; j++)
                {
                    var expected = (float)BitConverter.UInt16BitsToHalf(bits[i + j]);
                    AssertSame(expected, v16[j], bits[i + j]);
                    AssertSame(expected, F16Format.Load1((byte*)(p + i + j)), bits[i + j]);
                    if (j < 8)
                    {
                        AssertSame(expected, v8[j], bits[i + j]);
                    }
                }
            }
        }

        static void AssertSame(float expected, float actual, ushort h)
        {
            if (float.IsNaN(expected))
            {
                Assert.True(float.IsNaN(actual), $"0x{h:x4}: NaN expected, got {actual}");
            }
            else
            {
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual), $"0x{h:x4}: {expected:R} expected, got {actual:R}");
            }
        }
    }

    private static void Check(Fmt fmt, int m, int k, int n, int rowStart, int rowEnd, bool accumulate, int seed, bool packed = false)
    {
        var random = new Random(seed);
        var x = new float[m * k];
        for (var i = 0; i < x.Length; i++)
        {
            x[i] = (float)((2 * random.NextDouble()) - 1);
        }

        var es = fmt == Fmt.F32 ? 4 : 2;
        Assert.False(packed && fmt == Fmt.Bf16Pairs);
        var w = new byte[n * k * es];
        var wd = new double[n * k];
        for (var i = 0; i < n * k; i++)
        {
            var v = (float)((2 * random.NextDouble()) - 1);
            switch (fmt)
            {
                case Fmt.F32:
                    BinaryPrimitives.WriteSingleLittleEndian(w.AsSpan(i * 4), v);
                    wd[i] = v;
                    break;
                case Fmt.Bf16:
                case Fmt.Bf16Pairs:
                    var b = RandomLlama.ToBf16(v);
                    BinaryPrimitives.WriteUInt16LittleEndian(w.AsSpan(i * 2), b);
                    wd[i] = BitConverter.Int32BitsToSingle(b << 16);
                    break;
                default:
                    BinaryPrimitives.WriteHalfLittleEndian(w.AsSpan(i * 2), (Half)v);
                    wd[i] = (double)(Half)v;
                    break;
            }
        }

        const int Ldy = 3;
        var ldy = n + Ldy;
        var y = new float[m * ldy];
        for (var i = 0; i < y.Length; i++)
        {
            y[i] = (float)random.NextDouble();
        }

        var before = (float[])y.Clone();
        var xp = new float[PackedGemm.PackedSize(m, k)];
        var scratch = new float[PackedGemm.ScratchFloats];
        fixed (float* px = x, py = y, pxp = xp, ps = scratch)
        fixed (byte* pw = w)
        {
            if (packed)
            {
                PackedGemm.PackInput(px, m, k, pxp);
            }

            switch (fmt)
            {
                case Fmt.F32 when packed:
                    PackedGemm.Compute<DenseRows<F32Format>>(pxp, m, k, pw, py, ldy, rowStart, rowEnd, accumulate, ps);
                    break;
                case Fmt.Bf16 when packed:
                    PackedGemm.Compute<DenseRows<Bf16Format>>(pxp, m, k, pw, py, ldy, rowStart, rowEnd, accumulate, ps);
                    break;
                case Fmt.F16 when packed:
                    PackedGemm.Compute<DenseRows<F16Format>>(pxp, m, k, pw, py, ldy, rowStart, rowEnd, accumulate, ps);
                    break;
            }

            switch (packed ? (Fmt)(-1) : fmt)
            {
                case Fmt.F32:
                    LinearKernels.Compute<F32Format>(px, m, k, pw, py, ldy, rowStart, rowEnd, accumulate);
                    break;
                case Fmt.Bf16:
                    LinearKernels.Compute<Bf16Format>(px, m, k, pw, py, ldy, rowStart, rowEnd, accumulate);
                    break;
                case Fmt.F16:
                    LinearKernels.Compute<F16Format>(px, m, k, pw, py, ldy, rowStart, rowEnd, accumulate);
                    break;
                case Fmt.Bf16Pairs:
                    Bf16PairKernels.Compute(px, m, k, pw, py, ldy, rowStart, rowEnd, accumulate);
                    break;
            }
        }

        for (var t = 0; t < m; t++)
        {
            for (var r = 0; r < ldy; r++)
            {
                var actual = y[(t * ldy) + r];
                if (r < rowStart || r >= rowEnd)
                {
                    Assert.Equal(before[(t * ldy) + r], actual);
                    continue;
                }

                double expected = accumulate ? before[(t * ldy) + r] : 0;
                double magnitude = Math.Abs(expected);
                for (var i = 0; i < k; i++)
                {
                    expected += x[(t * k) + i] * wd[(r * k) + i];
                    magnitude += Math.Abs(x[(t * k) + i] * wd[(r * k) + i]);
                }

                // fp32 accumulation: error bounded by a few ulps of the sum of magnitudes.
                Assert.True(Math.Abs(actual - expected) <= 1e-6 * magnitude + 1e-7, $"{fmt} m={m} k={k} n={n} t={t} r={r}: {actual} vs {expected}");
            }
        }
    }
}
