using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Petals.Backends.Cpu.Kernels.Quant;

/// <summary>
/// Integer dot products of one packed weight row with one token's <see cref="Q8Activations"/> (AVX2 byte
/// multiply-adds: <c>vpmaddubsw</c> of unsigned codes by signed inputs, <c>vpmaddwd</c> to 32-bit sums, one fp32 FMA per
/// 32 weights). The 256-bit form is the fastest on the AVX-512 machines measured here too (Zen 4 splits 512-bit integer
/// operations in two), so both vector paths run it; <see cref="KernelPath.Scalar"/> uses the chunked fp32 path instead.
/// </summary>
internal static unsafe class FusedDots
{
    private static readonly Vector256<short> Ones = Vector256.Create((short)1);

    /// <summary>Whether the fused kernels can run here.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>An fp16 value without a library call: exact for every finite value (non-finite scales are rejected at load).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(byte* p)
    {
        uint h = Unsafe.ReadUnaligned<ushort>(p);
        var magnitude = BitConverter.UInt32BitsToSingle((h & 0x7fff) << 13) * 5.192296858534828e33f;
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude) | ((h & 0x8000) << 16));
    }

    /// <summary>Signed codes times signed inputs, 32 of each, as 8 int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SignedDot(Vector256<sbyte> w, Vector256<sbyte> x) =>
        Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(w), Avx2.Sign(x, w)), Ones));

    /// <summary>Unsigned codes (below 128) times signed inputs, 32 of each, as 8 partial sums (lanes 0-3: elements 0-15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> UnsignedDot(Vector256<byte> w, Vector256<sbyte> x) =>
        Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(w, x), Ones));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q8_0(byte* row, int k, in Q8Activations x)
    {
        Vector256<float> acc0 = default, acc1 = default;
        var blocks = k / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var p0 = row + (b * 34);
            var p1 = p0 + 34;
            acc0 = Fma.MultiplyAdd(SignedDot(Vector256.Load((sbyte*)(p0 + 2)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(Half(p0) * x.Scale[b]), acc0);
            acc1 = Fma.MultiplyAdd(SignedDot(Vector256.Load((sbyte*)(p1 + 2)), Vector256.Load(x.Q + (b * 32) + 32)), Vector256.Create(Half(p1) * x.Scale[b + 1]), acc1);
        }

        for (; b < blocks; b++)
        {
            var p0 = row + (b * 34);
            acc0 = Fma.MultiplyAdd(SignedDot(Vector256.Load((sbyte*)(p0 + 2)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(Half(p0) * x.Scale[b]), acc0);
        }

        return Vector256.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Int8Row(byte* row, int k, in Q8Activations x)
    {
        var scale = Unsafe.ReadUnaligned<float>(row);
        var q = (sbyte*)(row + sizeof(float));
        Vector256<float> acc0 = default, acc1 = default;
        var blocks = k / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            acc0 = Fma.MultiplyAdd(SignedDot(Vector256.Load(q + (b * 32)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(x.Scale[b]), acc0);
            acc1 = Fma.MultiplyAdd(SignedDot(Vector256.Load(q + (b * 32) + 32), Vector256.Load(x.Q + (b * 32) + 32)), Vector256.Create(x.Scale[b + 1]), acc1);
        }

        for (; b < blocks; b++)
        {
            acc0 = Fma.MultiplyAdd(SignedDot(Vector256.Load(q + (b * 32)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(x.Scale[b]), acc0);
        }

        return Vector256.Sum(acc0 + acc1) * scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q4_0(byte* row, int k, in Q8Activations x)
    {
        Vector256<float> acc0 = default, acc1 = default;
        var offset = 0f;
        var low = Vector128.Create((byte)15);
        var blocks = k / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var p0 = row + (b * 18);
            var p1 = p0 + 18;
            var d0 = Half(p0);
            var d1 = Half(p1);
            var v0 = Vector128.Load(p0 + 2);
            var v1 = Vector128.Load(p1 + 2);
            acc0 = Fma.MultiplyAdd(UnsignedDot(Vector256.Create(v0 & low, Vector128.ShiftRightLogical(v0, 4)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(d0 * x.Scale[b]), acc0);
            acc1 = Fma.MultiplyAdd(UnsignedDot(Vector256.Create(v1 & low, Vector128.ShiftRightLogical(v1, 4)), Vector256.Load(x.Q + (b * 32) + 32)), Vector256.Create(d1 * x.Scale[b + 1]), acc1);
            offset = MathF.FusedMultiplyAdd(d0, x.ScaledSum[b], offset);
            offset = MathF.FusedMultiplyAdd(d1, x.ScaledSum[b + 1], offset);
        }

        for (; b < blocks; b++)
        {
            var p0 = row + (b * 18);
            var d0 = Half(p0);
            var v0 = Vector128.Load(p0 + 2);
            acc0 = Fma.MultiplyAdd(UnsignedDot(Vector256.Create(v0 & low, Vector128.ShiftRightLogical(v0, 4)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(d0 * x.Scale[b]), acc0);
            offset = MathF.FusedMultiplyAdd(d0, x.ScaledSum[b], offset);
        }

        return Vector256.Sum(acc0 + acc1) - (8 * offset);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q4_K(byte* row, int k, in Q8Activations x)
    {
        Vector256<float> acc0 = default, acc1 = default;
        var mins = 0f;
        var low = Vector256.Create((byte)15);
        var supers = k / 256;
        for (var s = 0; s < supers; s++)
        {
            var p = row + (s * 144);
            var d = Half(p);
            var dmin = Half(p + 2);
            var sc = p + 4;
            var qs = p + 16;
            var blockMins = 0f;
            for (var j = 0; j < 4; j++)
            {
                var b = (s * 8) + (2 * j);
                KScales.Get(sc, 2 * j, out var s1, out var m1);
                KScales.Get(sc, (2 * j) + 1, out var s2, out var m2);
                var v = Vector256.Load(qs + (32 * j));
                acc0 = Fma.MultiplyAdd(UnsignedDot(v & low, Vector256.Load(x.Q + (b * 32))), Vector256.Create(d * s1 * x.Scale[b]), acc0);
                acc1 = Fma.MultiplyAdd(UnsignedDot(Vector256.ShiftRightLogical(v, 4), Vector256.Load(x.Q + (b * 32) + 32)), Vector256.Create(d * s2 * x.Scale[b + 1]), acc1);
                blockMins += (m1 * x.ScaledSum[b]) + (m2 * x.ScaledSum[b + 1]);
            }

            mins = MathF.FusedMultiplyAdd(dmin, blockMins, mins);
        }

        return Vector256.Sum(acc0 + acc1) - mins;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q6_K(byte* row, int k, in Q8Activations x)
    {
        Vector256<float> acc0 = default, acc1 = default;
        var offset = 0f;
        var low = Vector256.Create((byte)15);
        var two = Vector256.Create((byte)3);
        var supers = k / 256;
        for (var s = 0; s < supers; s++)
        {
            var p = row + (s * 210);
            var d = Half(p + 208);
            var sc = (sbyte*)(p + 192);
            for (var n = 0; n < 2; n++)
            {
                var qh = Vector256.Load(p + 128 + (32 * n));
                var l0 = Vector256.Load(p + (64 * n));
                var l1 = Vector256.Load(p + (64 * n) + 32);
                for (var q = 0; q < 4; q++)
                {
                    var b = (s * 8) + (4 * n) + q;
                    var lowBits = q switch
                    {
                        0 => l0 & low,
                        1 => l1 & low,
                        2 => Vector256.ShiftRightLogical(l0, 4),
                        _ => Vector256.ShiftRightLogical(l1, 4),
                    };
                    var codes = lowBits | Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 2 * q) & two, 4);
                    float sa = sc[(8 * n) + (2 * q)], sb = sc[(8 * n) + (2 * q) + 1];
                    var dx = d * x.Scale[b];
                    var scales = Vector256.Create(Vector128.Create(sa * dx), Vector128.Create(sb * dx));
                    if ((q & 1) == 0)
                    {
                        acc0 = Fma.MultiplyAdd(UnsignedDot(codes, Vector256.Load(x.Q + (b * 32))), scales, acc0);
                    }
                    else
                    {
                        acc1 = Fma.MultiplyAdd(UnsignedDot(codes, Vector256.Load(x.Q + (b * 32))), scales, acc1);
                    }

                    offset = MathF.FusedMultiplyAdd(dx, (sa * x.Sum16[2 * b]) + (sb * x.Sum16[(2 * b) + 1]), offset);
                }
            }
        }

        return Vector256.Sum(acc0 + acc1) - (32 * offset);
    }
}
