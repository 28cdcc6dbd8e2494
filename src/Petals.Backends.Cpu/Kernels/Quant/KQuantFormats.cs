using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Kernels.Quant;

/// <summary>Q2_K: 16 scale/min bytes (4 bits each), 64 bytes of 2-bit codes, fp16 d and dmin; sub-blocks of 16.</summary>
internal readonly unsafe struct Q2_KFormat : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q2_K(row, k, x);

    public static TensorDType DType => TensorDType.Q2_K;

    public static int BlockElements => 256;

    public static int BlockBytes => 84;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var scales = block;
        var d = Widen.Half(block + 80);
        var dmin = Widen.Half(block + 82);
        for (var n = 0; n < 2; n++)
        {
            var q = block + 16 + (32 * n);
            for (var j = 0; j < 4; j++)
            {
                var shift = 2 * j;
                for (var h = 0; h < 2; h++)
                {
                    int sc = scales[(8 * n) + (2 * j) + h];
                    var dl = d * (sc & 15);
                    var ml = dmin * (sc >> 4);
                    var qh = q + (16 * h);
                    var o = dst + (128 * n) + (32 * j) + (16 * h);
                    if (path == KernelPath.Scalar)
                    {
                        for (var l = 0; l < 16; l++)
                        {
                            o[l] = MathF.FusedMultiplyAdd((qh[l] >> shift) & 3, dl, -ml);
                        }
                    }
                    else
                    {
                        Widen.U8x16(Vector128.ShiftRightLogical(Vector128.Load(qh), shift) & Vector128.Create((byte)3), dl, -ml, o, path);
                    }
                }
            }
        }
    }
}

/// <summary>Q3_K: 32 bytes of high bits, 64 bytes of 2-bit codes, 12 bytes of 6-bit scales, fp16 d; sub-blocks of 16; codes -4..3.</summary>
internal readonly unsafe struct Q3_KFormat : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q3_K(row, k, x);

    public static TensorDType DType => TensorDType.Q3_K;

    public static int BlockElements => 256;

    public static int BlockBytes => 110;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var hm = block;
        var d = Widen.Half(block + 108);
        var scales = stackalloc sbyte[16];
        UnpackScales(block + 96, scales);
        for (var n = 0; n < 2; n++)
        {
            var q = block + 32 + (32 * n);
            for (var j = 0; j < 4; j++)
            {
                var shift = 2 * j;
                var bit = (byte)(1 << ((4 * n) + j));
                for (var h = 0; h < 2; h++)
                {
                    var dl = d * (scales[(8 * n) + (2 * j) + h] - 32);
                    var ql = q + (16 * h);
                    var hl = hm + (16 * h);
                    var o = dst + (128 * n) + (32 * j) + (16 * h);
                    if (path == KernelPath.Scalar)
                    {
                        for (var l = 0; l < 16; l++)
                        {
                            var code = ((ql[l] >> shift) & 3) | ((hl[l] & bit) != 0 ? 4 : 0);
                            o[l] = MathF.FusedMultiplyAdd(code, dl, -4 * dl);
                        }
                    }
                    else
                    {
                        var low = Vector128.ShiftRightLogical(Vector128.Load(ql), shift) & Vector128.Create((byte)3);
                        var m = Vector128.Create(bit);
                        var high = Vector128.Equals(Vector128.Load(hl) & m, m) & Vector128.Create((byte)4);
                        Widen.U8x16(low | high, dl, -4 * dl, o, path);
                    }
                }
            }
        }
    }

    /// <summary>The 16 6-bit scales (unbiased by 32 later): low 4 bits in bytes 0-7, high 2 bits in bytes 8-11.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void UnpackScales(byte* s, sbyte* scales)
    {
        for (var i = 0; i < 16; i++)
        {
            var low = i < 8 ? s[i] & 15 : s[i - 8] >> 4;
            var high = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
            scales[i] = (sbyte)(low | (high << 4));
        }
    }
}

/// <summary>The 6-bit scales and minimums of the eight sub-blocks of a Q4_K/Q5_K super-block.</summary>
internal static unsafe class KScales
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Get(byte* q, int j, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = q[j] & 63;
            min = q[j + 4] & 63;
        }
        else
        {
            scale = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
            min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }
}

/// <summary>Q4_K: fp16 d and dmin, 12 bytes of 6-bit scales and minimums, 128 bytes of 4-bit codes; sub-blocks of 32.</summary>
internal readonly unsafe struct Q4_KFormat : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q4_K(row, k, x);

    public static TensorDType DType => TensorDType.Q4_K;

    public static int BlockElements => 256;

    public static int BlockBytes => 144;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var d = Widen.Half(block);
        var dmin = Widen.Half(block + 2);
        var sc = block + 4;
        for (var j = 0; j < 4; j++)
        {
            var q = block + 16 + (32 * j);
            KScales.Get(sc, 2 * j, out var s1, out var m1);
            KScales.Get(sc, (2 * j) + 1, out var s2, out var m2);
            float d1 = d * s1, n1 = -(dmin * m1), d2 = d * s2, n2 = -(dmin * m2);
            var o = dst + (64 * j);
            if (path == KernelPath.Scalar)
            {
                for (var l = 0; l < 32; l++)
                {
                    o[l] = MathF.FusedMultiplyAdd(q[l] & 15, d1, n1);
                    o[l + 32] = MathF.FusedMultiplyAdd(q[l] >> 4, d2, n2);
                }

                continue;
            }

            for (var h = 0; h < 2; h++)
            {
                var v = Vector128.Load(q + (16 * h));
                Widen.U8x16(v & Vector128.Create((byte)15), d1, n1, o + (16 * h), path);
                Widen.U8x16(Vector128.ShiftRightLogical(v, 4), d2, n2, o + 32 + (16 * h), path);
            }
        }
    }
}

/// <summary>Q5_K: like Q4_K with 32 bytes of fifth bits (bit <c>2j</c>/<c>2j+1</c> of byte <c>l</c> for the sub-block pair <c>j</c>).</summary>
internal readonly unsafe struct Q5_KFormat : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q5_K(row, k, x);

    public static TensorDType DType => TensorDType.Q5_K;

    public static int BlockElements => 256;

    public static int BlockBytes => 176;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var d = Widen.Half(block);
        var dmin = Widen.Half(block + 2);
        var sc = block + 4;
        var qh = block + 16;
        for (var j = 0; j < 4; j++)
        {
            var ql = block + 48 + (32 * j);
            KScales.Get(sc, 2 * j, out var s1, out var m1);
            KScales.Get(sc, (2 * j) + 1, out var s2, out var m2);
            float d1 = d * s1, n1 = -(dmin * m1), d2 = d * s2, n2 = -(dmin * m2);
            var u1 = (byte)(1 << (2 * j));
            var u2 = (byte)(2 << (2 * j));
            var o = dst + (64 * j);
            if (path == KernelPath.Scalar)
            {
                for (var l = 0; l < 32; l++)
                {
                    o[l] = MathF.FusedMultiplyAdd((ql[l] & 15) + ((qh[l] & u1) != 0 ? 16 : 0), d1, n1);
                    o[l + 32] = MathF.FusedMultiplyAdd((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0), d2, n2);
                }

                continue;
            }

            for (var h = 0; h < 2; h++)
            {
                var v = Vector128.Load(ql + (16 * h));
                var hv = Vector128.Load(qh + (16 * h));
                var b1 = Vector128.Create(u1);
                var b2 = Vector128.Create(u2);
                var hi1 = Vector128.Equals(hv & b1, b1) & Vector128.Create((byte)16);
                var hi2 = Vector128.Equals(hv & b2, b2) & Vector128.Create((byte)16);
                Widen.U8x16((v & Vector128.Create((byte)15)) | hi1, d1, n1, o + (16 * h), path);
                Widen.U8x16(Vector128.ShiftRightLogical(v, 4) | hi2, d2, n2, o + 32 + (16 * h), path);
            }
        }
    }
}

/// <summary>Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed 8-bit scales, fp16 d; sub-blocks of 16; codes -32..31.</summary>
internal readonly unsafe struct Q6_KFormat : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q6_K(row, k, x);

    public static TensorDType DType => TensorDType.Q6_K;

    public static int BlockElements => 256;

    public static int BlockBytes => 210;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var d = Widen.Half(block + 208);
        var scales = (sbyte*)(block + 192);
        for (var n = 0; n < 2; n++)
        {
            var ql = block + (64 * n);
            var qh = block + 128 + (32 * n);
            var sc = scales + (8 * n);
            var o = dst + (128 * n);
            for (var h = 0; h < 2; h++)
            {
                // Sub-block h of each of the four 32-element quarters.
                var dl0 = d * sc[h];
                var dl1 = d * sc[h + 2];
                var dl2 = d * sc[h + 4];
                var dl3 = d * sc[h + 6];
                var l0 = 16 * h;
                if (path == KernelPath.Scalar)
                {
                    for (var l = l0; l < l0 + 16; l++)
                    {
                        var c1 = (ql[l] & 15) | ((qh[l] & 3) << 4);
                        var c2 = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
                        var c3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                        var c4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                        o[l] = MathF.FusedMultiplyAdd(c1, dl0, -32 * dl0);
                        o[l + 32] = MathF.FusedMultiplyAdd(c2, dl1, -32 * dl1);
                        o[l + 64] = MathF.FusedMultiplyAdd(c3, dl2, -32 * dl2);
                        o[l + 96] = MathF.FusedMultiplyAdd(c4, dl3, -32 * dl3);
                    }

                    continue;
                }

                var a = Vector128.Load(ql + l0);
                var b = Vector128.Load(ql + l0 + 32);
                var hv = Vector128.Load(qh + l0);
                var m4 = Vector128.Create((byte)15);
                var m2 = Vector128.Create((byte)3);
                Widen.U8x16((a & m4) | Vector128.ShiftLeft(hv & m2, 4), dl0, -32 * dl0, o + l0, path);
                Widen.U8x16((b & m4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(hv, 2) & m2, 4), dl1, -32 * dl1, o + l0 + 32, path);
                Widen.U8x16(Vector128.ShiftRightLogical(a, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(hv, 4) & m2, 4), dl2, -32 * dl2, o + l0 + 64, path);
                Widen.U8x16(Vector128.ShiftRightLogical(b, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(hv, 6), 4), dl3, -32 * dl3, o + l0 + 96, path);
            }
        }
    }
}
