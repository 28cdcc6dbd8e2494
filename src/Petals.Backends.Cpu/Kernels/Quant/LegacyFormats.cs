using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Kernels.Quant;

/// <summary>Q8_0: fp16 scale, 32 signed bytes.</summary>
internal readonly unsafe struct Q8_0Format : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q8_0(row, k, x);

    public static TensorDType DType => TensorDType.Q8_0;

    public static int BlockElements => 32;

    public static int BlockBytes => 34;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var d = Widen.Half(block);
        var q = (sbyte*)(block + 2);
        if (path == KernelPath.Scalar)
        {
            for (var i = 0; i < 32; i++)
            {
                dst[i] = q[i] * d;
            }

            return;
        }

        Widen.S8x16(Vector128.Load(q), d, dst, path);
        Widen.S8x16(Vector128.Load(q + 16), d, dst + 16, path);
    }
}

/// <summary>Q4_0: fp16 scale, 16 bytes of 4-bit codes offset by 8 (low nibbles are elements 0-15, high nibbles 16-31).</summary>
internal readonly unsafe struct Q4_0Format : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q4_0(row, k, x);

    public static TensorDType DType => TensorDType.Q4_0;

    public static int BlockElements => 32;

    public static int BlockBytes => 18;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var d = Widen.Half(block);
        var qs = block + 2;
        if (path == KernelPath.Scalar)
        {
            for (var j = 0; j < 16; j++)
            {
                dst[j] = ((qs[j] & 15) - 8) * d;
                dst[j + 16] = ((qs[j] >> 4) - 8) * d;
            }

            return;
        }

        var v = Vector128.Load(qs);
        Widen.U8x16(v & Vector128.Create((byte)15), d, -8 * d, dst, path);
        Widen.U8x16(Vector128.ShiftRightLogical(v, 4), d, -8 * d, dst + 16, path);
    }
}

/// <summary>Q4_1: fp16 scale and minimum, 16 bytes of 4-bit codes.</summary>
internal readonly unsafe struct Q4_1Format : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q4_1(row, k, x);

    public static TensorDType DType => TensorDType.Q4_1;

    public static int BlockElements => 32;

    public static int BlockBytes => 20;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var d = Widen.Half(block);
        var m = Widen.Half(block + 2);
        var qs = block + 4;
        if (path == KernelPath.Scalar)
        {
            for (var j = 0; j < 16; j++)
            {
                dst[j] = MathF.FusedMultiplyAdd(qs[j] & 15, d, m);
                dst[j + 16] = MathF.FusedMultiplyAdd(qs[j] >> 4, d, m);
            }

            return;
        }

        var v = Vector128.Load(qs);
        Widen.U8x16(v & Vector128.Create((byte)15), d, m, dst, path);
        Widen.U8x16(Vector128.ShiftRightLogical(v, 4), d, m, dst + 16, path);
    }
}

/// <summary>Q5_0: fp16 scale, 32 high bits, 16 bytes of low nibbles; codes offset by 16.</summary>
internal readonly unsafe struct Q5_0Format : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q5_0(row, k, x);

    public static TensorDType DType => TensorDType.Q5_0;

    public static int BlockElements => 32;

    public static int BlockBytes => 22;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var d = Widen.Half(block);
        Q5.Decode(Unsafe.ReadUnaligned<uint>(block + 2), block + 6, d, -16 * d, dst, path);
    }
}

/// <summary>Q5_1: fp16 scale and minimum, 32 high bits, 16 bytes of low nibbles.</summary>
internal readonly unsafe struct Q5_1Format : IQuantFormat
{
    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Q5_1(row, k, x);

    public static TensorDType DType => TensorDType.Q5_1;

    public static int BlockElements => 32;

    public static int BlockBytes => 24;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var d = Widen.Half(block);
        var m = Widen.Half(block + 2);
        Q5.Decode(Unsafe.ReadUnaligned<uint>(block + 4), block + 8, d, m, dst, path);
    }
}

/// <summary>The shared 5-bit decoding: bit <c>j</c> of <c>qh</c> is bit 4 of element <c>j</c>.</summary>
internal static unsafe class Q5
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Decode(uint qh, byte* qs, float scale, float offset, float* dst, KernelPath path)
    {
        if (path == KernelPath.Scalar)
        {
            for (var j = 0; j < 16; j++)
            {
                var lo = (qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
                var hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
                dst[j] = MathF.FusedMultiplyAdd(lo, scale, offset);
                dst[j + 16] = MathF.FusedMultiplyAdd(hi, scale, offset);
            }

            return;
        }

        var v = Vector128.Load(qs);
        var h = Vector128.Create(qh).AsByte();
        Widen.U8x16((v & Vector128.Create((byte)15)) | HighBits(h, 0, 0x10), scale, offset, dst, path);
        Widen.U8x16(Vector128.ShiftRightLogical(v, 4) | HighBits(h, 2, 0x10), scale, offset, dst + 16, path);
    }

    /// <summary>Bytes <paramref name="first"/> and <paramref name="first"/>+1 of <paramref name="bits"/> spread one bit per lane, as <paramref name="value"/> or 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> HighBits(Vector128<byte> bits, byte first, byte value)
    {
        var second = (byte)(first + 1);
        var spread = Vector128.Shuffle(bits, Vector128.Create(first, first, first, first, first, first, first, first, second, second, second, second, second, second, second, second));
        var mask = Vector128.Create((byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        return Vector128.Equals(spread & mask, mask) & Vector128.Create(value);
    }
}

/// <summary>NF4: fp16 absmax scale, 32 bytes of 4-bit indices into the NormalFloat table (low nibbles elements 0-31, high 32-63).</summary>
internal readonly unsafe struct Nf4Format : IQuantFormat
{
    /// <summary>QLoRA's sixteen NormalFloat levels.</summary>
    internal static readonly float[] Levels =
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
        -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];

    private static readonly Vector512<float> Table16 = Vector512.Create(Levels);
    private static readonly Vector256<float> TableLow = Vector256.Create(Levels.AsSpan(0, 8));
    private static readonly Vector256<float> TableHigh = Vector256.Create(Levels.AsSpan(8, 8));

    public static TensorDType DType => TensorDType.NF4;

    public static int BlockElements => 64;

    public static int BlockBytes => 34;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* dst, KernelPath path)
    {
        var d = Widen.Half(block);
        var q = block + 2;
        if (path == KernelPath.Scalar)
        {
            for (var i = 0; i < 32; i++)
            {
                dst[i] = Levels[q[i] & 15] * d;
                dst[i + 32] = Levels[q[i] >> 4] * d;
            }

            return;
        }

        for (var half = 0; half < 2; half++)
        {
            var v = Vector128.Load(q + (half * 16));
            Lookup(v & Vector128.Create((byte)15), d, dst + (half * 16), path);
            Lookup(Vector128.ShiftRightLogical(v, 4), d, dst + 32 + (half * 16), path);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Lookup(Vector128<byte> codes, float d, float* dst, KernelPath path)
    {
        if (path == KernelPath.Vector512)
        {
            var idx = System.Runtime.Intrinsics.X86.Avx512F.ConvertToVector512Int32(codes);
            (System.Runtime.Intrinsics.X86.Avx512F.PermuteVar16x32(Table16, idx) * Vector512.Create(d)).Store(dst);
            return;
        }

        var s = Vector256.Create(d);
        for (var h = 0; h < 2; h++)
        {
            var idx = System.Runtime.Intrinsics.X86.Avx2.ConvertToVector256Int32(h == 0 ? codes : System.Runtime.Intrinsics.X86.Sse2.ShiftRightLogical128BitLane(codes, 8));
            var lo = System.Runtime.Intrinsics.X86.Avx2.PermuteVar8x32(TableLow, idx);
            var hi = System.Runtime.Intrinsics.X86.Avx2.PermuteVar8x32(TableHigh, idx);
            var upper = Vector256.GreaterThan(idx, Vector256.Create(7)).AsSingle();
            (Vector256.ConditionalSelect(upper, hi, lo) * s).Store(dst + (h * 8));
        }
    }
}
