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

    /// <summary>Whether the fused kernels can run here.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// Every fp16 value as fp32 (256 KiB, native memory): one load per block scale instead of a dozen conversion
    /// instructions. Each kernel reads the pointer into a local once: the kernels are compiled fully optimized on first
    /// call (<see cref="MethodImplOptions.AggressiveOptimization"/>), before static fields could be folded into constants.
    /// </summary>
    private static readonly float* HalfTable = CreateHalfTable();


    private static float* CreateHalfTable()
    {
        var table = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (var i = 0; i < 65536; i++)
        {
            table[i] = (float)BitConverter.UInt16BitsToHalf((ushort)i);
        }

        return table;
    }

    /// <summary>Signed codes times signed inputs, 32 of each, as 8 int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SignedDot(Vector256<sbyte> w, Vector256<sbyte> x) =>
        Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(w), Avx2.Sign(x, w)), Vector256.Create((short)1)));

    /// <summary>Unsigned codes (below 128) times signed inputs, 32 of each, as 8 partial sums (lanes 0-3: elements 0-15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> UnsignedDot(Vector256<byte> w, Vector256<sbyte> x) =>
        Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(w, x), Vector256.Create((short)1)));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q8_0(byte* row, int k, in Q8Activations x)
    {
        var halves = HalfTable;
        Vector256<float> acc0 = default, acc1 = default;
        var blocks = k / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var p0 = row + (b * 34);
            var p1 = p0 + 34;
            acc0 = Fma.MultiplyAdd(SignedDot(Vector256.Load((sbyte*)(p0 + 2)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p0)] * x.Scale[b]), acc0);
            acc1 = Fma.MultiplyAdd(SignedDot(Vector256.Load((sbyte*)(p1 + 2)), Vector256.Load(x.Q + (b * 32) + 32)), Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p1)] * x.Scale[b + 1]), acc1);
        }

        for (; b < blocks; b++)
        {
            var p0 = row + (b * 34);
            acc0 = Fma.MultiplyAdd(SignedDot(Vector256.Load((sbyte*)(p0 + 2)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p0)] * x.Scale[b]), acc0);
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
        var halves = HalfTable;
        Vector256<float> acc0 = default, acc1 = default;
        // Two offset sums: one dependent scalar FMA chain (4 cycles a link) per two blocks was the loop's critical path.
        float offset = 0f, offset1 = 0f;
        var low = Vector128.Create((byte)15);
        var blocks = k / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var p0 = row + (b * 18);
            var p1 = p0 + 18;
            var d0 = halves[Unsafe.ReadUnaligned<ushort>(p0)];
            var d1 = halves[Unsafe.ReadUnaligned<ushort>(p1)];
            var v0 = Vector128.Load(p0 + 2);
            var v1 = Vector128.Load(p1 + 2);
            acc0 = Fma.MultiplyAdd(UnsignedDot(Vector256.Create(v0 & low, (Vector128.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & low)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(d0 * x.Scale[b]), acc0);
            acc1 = Fma.MultiplyAdd(UnsignedDot(Vector256.Create(v1 & low, (Vector128.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & low)), Vector256.Load(x.Q + (b * 32) + 32)), Vector256.Create(d1 * x.Scale[b + 1]), acc1);
            offset = MathF.FusedMultiplyAdd(d0, x.ScaledSum[b], offset);
            offset1 = MathF.FusedMultiplyAdd(d1, x.ScaledSum[b + 1], offset1);
        }

        for (; b < blocks; b++)
        {
            var p0 = row + (b * 18);
            var d0 = halves[Unsafe.ReadUnaligned<ushort>(p0)];
            var v0 = Vector128.Load(p0 + 2);
            acc0 = Fma.MultiplyAdd(UnsignedDot(Vector256.Create(v0 & low, (Vector128.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & low)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(d0 * x.Scale[b]), acc0);
            offset = MathF.FusedMultiplyAdd(d0, x.ScaledSum[b], offset);
        }

        return Vector256.Sum(acc0 + acc1) - (8 * (offset + offset1));
    }

    /// <summary>Q4_1: <c>w = d q + m</c>, so a block's product is <c>d dx dot(q, xq) + m dx sum(xq)</c>; the minimum term has two scalar chains.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q4_1(byte* row, int k, in Q8Activations x)
    {
        var halves = HalfTable;
        Vector256<float> acc0 = default, acc1 = default;
        float min0 = 0f, min1 = 0f;
        var low = Vector256.Create((byte)15);
        var blocks = k / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var p0 = row + (b * 20);
            var p1 = p0 + 20;
            var v0 = Vector128.Load(p0 + 4);
            var v1 = Vector128.Load(p1 + 4);
            acc0 = Fma.MultiplyAdd(UnsignedDot(Vector256.Create(v0, Vector128.ShiftRightLogical(v0.AsUInt16(), 4).AsByte()) & low, Vector256.Load(x.Q + (b * 32))), Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p0)] * x.Scale[b]), acc0);
            acc1 = Fma.MultiplyAdd(UnsignedDot(Vector256.Create(v1, Vector128.ShiftRightLogical(v1.AsUInt16(), 4).AsByte()) & low, Vector256.Load(x.Q + (b * 32) + 32)), Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p1)] * x.Scale[b + 1]), acc1);
            min0 = MathF.FusedMultiplyAdd(halves[Unsafe.ReadUnaligned<ushort>(p0 + 2)], x.ScaledSum[b], min0);
            min1 = MathF.FusedMultiplyAdd(halves[Unsafe.ReadUnaligned<ushort>(p1 + 2)], x.ScaledSum[b + 1], min1);
        }

        for (; b < blocks; b++)
        {
            var p0 = row + (b * 20);
            var v0 = Vector128.Load(p0 + 4);
            acc0 = Fma.MultiplyAdd(UnsignedDot(Vector256.Create(v0, Vector128.ShiftRightLogical(v0.AsUInt16(), 4).AsByte()) & low, Vector256.Load(x.Q + (b * 32))), Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p0)] * x.Scale[b]), acc0);
            min0 = MathF.FusedMultiplyAdd(halves[Unsafe.ReadUnaligned<ushort>(p0 + 2)], x.ScaledSum[b], min0);
        }

        return Vector256.Sum(acc0 + acc1) + (min0 + min1);
    }

    /// <summary>The 32 five-bit codes of a Q5_0/Q5_1 block in element order: nibbles, and bit <c>j</c> of <paramref name="qh"/> as 16 in byte <c>j</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Q5Codes(byte* qs, uint qh)
    {
        var v = Vector128.Load(qs);
        var nibbles = Vector256.Create(v, Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)15);
        var spread = Avx2.Shuffle(Vector256.Create(qh).AsByte(), Vector256.Create(0x0000000000000000UL, 0x0101010101010101UL, 0x0202020202020202UL, 0x0303030303030303UL).AsByte());
        var bit = Vector256.Create(0x8040201008040201UL).AsByte();
        return nibbles | (Vector256.Equals(spread & bit, bit) & Vector256.Create((byte)16));
    }

    /// <summary>Q5_0 (<paramref name="minimumAt"/> &lt; 0: <c>w = d (q - 16)</c>) and Q5_1 (<c>w = d q + m</c>, m at byte <paramref name="minimumAt"/>): <c>d dx dot(q, xq)</c> plus the offset times <c>dx sum(xq)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q5(byte* row, int k, in Q8Activations x, int blockBytes, int minimumAt)
    {
        var halves = HalfTable;
        Vector256<float> acc0 = default, acc1 = default;
        float off0 = 0f, off1 = 0f;
        var hiAt = minimumAt < 0 ? 2 : 4;
        var blocks = k / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var p0 = row + (b * blockBytes);
            var p1 = p0 + blockBytes;
            var d0 = halves[Unsafe.ReadUnaligned<ushort>(p0)];
            var d1 = halves[Unsafe.ReadUnaligned<ushort>(p1)];
            acc0 = Fma.MultiplyAdd(UnsignedDot(Q5Codes(p0 + hiAt + 4, Unsafe.ReadUnaligned<uint>(p0 + hiAt)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(d0 * x.Scale[b]), acc0);
            acc1 = Fma.MultiplyAdd(UnsignedDot(Q5Codes(p1 + hiAt + 4, Unsafe.ReadUnaligned<uint>(p1 + hiAt)), Vector256.Load(x.Q + (b * 32) + 32)), Vector256.Create(d1 * x.Scale[b + 1]), acc1);
            off0 = MathF.FusedMultiplyAdd(minimumAt < 0 ? -16 * d0 : halves[Unsafe.ReadUnaligned<ushort>(p0 + minimumAt)], x.ScaledSum[b], off0);
            off1 = MathF.FusedMultiplyAdd(minimumAt < 0 ? -16 * d1 : halves[Unsafe.ReadUnaligned<ushort>(p1 + minimumAt)], x.ScaledSum[b + 1], off1);
        }

        for (; b < blocks; b++)
        {
            var p0 = row + (b * blockBytes);
            var d0 = halves[Unsafe.ReadUnaligned<ushort>(p0)];
            acc0 = Fma.MultiplyAdd(UnsignedDot(Q5Codes(p0 + hiAt + 4, Unsafe.ReadUnaligned<uint>(p0 + hiAt)), Vector256.Load(x.Q + (b * 32))), Vector256.Create(d0 * x.Scale[b]), acc0);
            off0 = MathF.FusedMultiplyAdd(minimumAt < 0 ? -16 * d0 : halves[Unsafe.ReadUnaligned<ushort>(p0 + minimumAt)], x.ScaledSum[b], off0);
        }

        return Vector256.Sum(acc0 + acc1) + (off0 + off1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q5_0(byte* row, int k, in Q8Activations x) => Q5(row, k, x, 22, -1);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q5_1(byte* row, int k, in Q8Activations x) => Q5(row, k, x, 24, 2);

    /// <summary>
    /// Q4_K: the eight 6-bit scales and minimums of a super-block are unpacked together (four 32-bit words), widened to
    /// fp32 vectors and multiplied by the eight input scales once; each 32-weight product then takes its scale by a lane
    /// permute, and the minimums of the super-block are one vector FMA with the inputs' scaled sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q4_K(byte* row, int k, in Q8Activations x)
    {
        var halves = HalfTable;
        // Four accumulators: with two, each took four dependent FMAs per super-block (16 cycles), about the loop's work.
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default, mins = default;
        var low = Vector256.Create((byte)15);
        var supers = k / 256;
        for (var s = 0; s < supers; s++)
        {
            var p = row + (s * 144);
            var d = halves[Unsafe.ReadUnaligned<ushort>(p)];
            var dmin = halves[Unsafe.ReadUnaligned<ushort>(p + 2)];
            var scales = ScalesAndMinimums(p + 4, d, dmin, x, s, ref mins);
            var qs = p + 16;
            var xq = x.Q + (s * 256);
            for (var j = 0; j < 4; j += 2)
            {
                var v = Vector256.Load(qs + (32 * j));
                var w = Vector256.Load(qs + (32 * j) + 32);
                acc0 = Fma.MultiplyAdd(UnsignedDot(v & low, Vector256.Load(xq + (64 * j))), Avx2.PermuteVar8x32(scales, Vector256.Create(2 * j)), acc0);
                acc1 = Fma.MultiplyAdd(UnsignedDot(Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & low, Vector256.Load(xq + (64 * j) + 32)), Avx2.PermuteVar8x32(scales, Vector256.Create((2 * j) + 1)), acc1);
                acc2 = Fma.MultiplyAdd(UnsignedDot(w & low, Vector256.Load(xq + (64 * j) + 64)), Avx2.PermuteVar8x32(scales, Vector256.Create((2 * j) + 2)), acc2);
                acc3 = Fma.MultiplyAdd(UnsignedDot(Vector256.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & low, Vector256.Load(xq + (64 * j) + 96)), Avx2.PermuteVar8x32(scales, Vector256.Create((2 * j) + 3)), acc3);
            }
        }

        return Vector256.Sum((acc0 + acc1) + (acc2 + acc3)) - Vector256.Sum(mins);
    }

    /// <summary>Q5_K: the <see cref="Q4_K"/> kernel with a fifth bit per code (bit <c>2j</c> / <c>2j+1</c> of byte <c>l</c> of the 32 high-bit bytes, as 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q5_K(byte* row, int k, in Q8Activations x)
    {
        var halves = HalfTable;
        Vector256<float> acc0 = default, acc1 = default, mins = default;
        var low = Vector256.Create((byte)15);
        var one = Vector256.Create((byte)1).AsUInt16();
        var supers = k / 256;
        for (var s = 0; s < supers; s++)
        {
            var p = row + (s * 176);
            var d = halves[Unsafe.ReadUnaligned<ushort>(p)];
            var dmin = halves[Unsafe.ReadUnaligned<ushort>(p + 2)];
            var scales = ScalesAndMinimums(p + 4, d, dmin, x, s, ref mins);
            var qh = Vector256.Load(p + 16).AsUInt16();
            var qs = p + 48;
            var xq = x.Q + (s * 256);
            for (var j = 0; j < 4; j++)
            {
                var v = Vector256.Load(qs + (32 * j));
                var h1 = Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 2 * j) & one, 4).AsByte();
                var h2 = Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, (2 * j) + 1) & one, 4).AsByte();
                acc0 = Fma.MultiplyAdd(UnsignedDot((v & low) | h1, Vector256.Load(xq + (64 * j))), Avx2.PermuteVar8x32(scales, Vector256.Create(2 * j)), acc0);
                acc1 = Fma.MultiplyAdd(UnsignedDot((Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & low) | h2, Vector256.Load(xq + (64 * j) + 32)), Avx2.PermuteVar8x32(scales, Vector256.Create((2 * j) + 1)), acc1);
            }
        }

        return Vector256.Sum(acc0 + acc1) - Vector256.Sum(mins);
    }

    /// <summary>
    /// Q2_K: 2-bit codes, 16 sub-blocks of 16 with 4-bit scales and minimums. The sub-block scales times <c>d</c> times
    /// the input scale (spread to the 16-long sub-blocks) are two vectors per super-block, each 32-code product takes its
    /// two by a permute, and the minimums are two vector FMAs with the inputs' per-16 sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q2_K(byte* row, int k, in Q8Activations x)
    {
        var halves = HalfTable;
        Vector256<float> acc0 = default, acc1 = default, mins = default;
        var m2 = Vector256.Create((byte)3);
        var m4 = Vector128.Create((byte)15);
        var spreadLow = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3);
        var spreadHigh = Vector256.Create(4, 4, 5, 5, 6, 6, 7, 7);
        var supers = k / 256;
        for (var s = 0; s < supers; s++)
        {
            var p = row + (s * 84);
            var d = Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p + 80)]);
            var dmin = Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p + 82)]);
            var sc = Vector128.Load(p);
            var scl = sc & m4;
            var mn = Vector128.ShiftRightLogical(sc.AsUInt16(), 4).AsByte() & m4;
            var xScale = Vector256.Load(x.Scale + (8 * s));
            var (e0, e1) = Widen16(scl.AsSByte(), d);
            var f0 = e0 * Avx2.PermuteVar8x32(xScale, spreadLow);
            var f1 = e1 * Avx2.PermuteVar8x32(xScale, spreadHigh);
            var (m0, m1) = Widen16(mn.AsSByte(), dmin);
            mins = PerSixteen(m0, m1, x, s, mins);
            var xq = x.Q + (s * 256);
            for (var n = 0; n < 2; n++)
            {
                var f = n == 0 ? f0 : f1;
                var q = Vector256.Load(p + 16 + (32 * n)).AsUInt16();
                var xn = xq + (128 * n);
                acc0 = Fma.MultiplyAdd(UnsignedDot(q.AsByte() & m2, Vector256.Load(xn)), Avx2.PermuteVar8x32(f, Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1)), acc0);
                acc1 = Fma.MultiplyAdd(UnsignedDot(Vector256.ShiftRightLogical(q, 2).AsByte() & m2, Vector256.Load(xn + 32)), Avx2.PermuteVar8x32(f, Vector256.Create(2, 2, 2, 2, 3, 3, 3, 3)), acc1);
                acc0 = Fma.MultiplyAdd(UnsignedDot(Vector256.ShiftRightLogical(q, 4).AsByte() & m2, Vector256.Load(xn + 64)), Avx2.PermuteVar8x32(f, Vector256.Create(4, 4, 4, 4, 5, 5, 5, 5)), acc0);
                acc1 = Fma.MultiplyAdd(UnsignedDot(Vector256.ShiftRightLogical(q, 6).AsByte() & m2, Vector256.Load(xn + 96)), Avx2.PermuteVar8x32(f, Vector256.Create(6, 6, 6, 6, 7, 7, 7, 7)), acc1);
            }
        }

        return Vector256.Sum(acc0 + acc1) - Vector256.Sum(mins);
    }

    /// <summary>
    /// Q3_K: unsigned codes <c>low 2 bits + 4 * high bit</c> (0-7, value code - 4), 16 sub-blocks of 16 with signed 6-bit
    /// scales (unpacked with vector masks); the -4 offset is one vector FMA per half
    /// super-block with the inputs' per-16 sums, as in <see cref="Q2_K"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q3_K(byte* row, int k, in Q8Activations x)
    {
        var halves = HalfTable;
        Vector256<float> acc0 = default, acc1 = default, offset = default;
        var m2 = Vector256.Create((byte)3);
        var four = Vector256.Create((byte)4);
        var spreadLow = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3);
        var spreadHigh = Vector256.Create(4, 4, 5, 5, 6, 6, 7, 7);
        var supers = k / 256;
        for (var s = 0; s < supers; s++)
        {
            var p = row + (s * 110);
            var d = Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p + 108)]);
            // The 16 6-bit scales: low nibbles from bytes 0-7 (scales 0-7 low, 8-15 high), 2-bit highs from bytes 8-11.
            var a = Unsafe.ReadUnaligned<ulong>(p + 96);
            var hb = Unsafe.ReadUnaligned<uint>(p + 104);
            var lowBits = Vector128.Create(a, a >> 4).AsByte() & Vector128.Create((byte)15);
            var highBits = Vector128.Create(hb, hb >> 2, hb >> 4, hb >> 6) & Vector128.Create(0x03030303u);
            var sc = (lowBits | Vector128.ShiftLeft(highBits, 4).AsByte()).AsSByte() - Vector128.Create((sbyte)32);
            var (e0, e1) = Widen16(sc, d);
            offset = PerSixteen(e0, e1, x, s, offset);
            var xScale = Vector256.Load(x.Scale + (8 * s));
            var f0 = e0 * Avx2.PermuteVar8x32(xScale, spreadLow);
            var f1 = e1 * Avx2.PermuteVar8x32(xScale, spreadHigh);
            var hm = Vector256.Load(p);
            var xq = x.Q + (s * 256);
            for (var n = 0; n < 2; n++)
            {
                var f = n == 0 ? f0 : f1;
                var q = Vector256.Load(p + 32 + (32 * n)).AsUInt16();
                var xn = xq + (128 * n);
                var b0 = Vector256.Create((byte)(1 << (4 * n)));
                var b1 = Vector256.Create((byte)(2 << (4 * n)));
                var b2 = Vector256.Create((byte)(4 << (4 * n)));
                var b3 = Vector256.Create((byte)(8 << (4 * n)));
                var c0 = (q.AsByte() & m2) | (Vector256.Equals(hm & b0, b0) & four);
                var c1 = (Vector256.ShiftRightLogical(q, 2).AsByte() & m2) | (Vector256.Equals(hm & b1, b1) & four);
                var c2 = (Vector256.ShiftRightLogical(q, 4).AsByte() & m2) | (Vector256.Equals(hm & b2, b2) & four);
                var c3 = (Vector256.ShiftRightLogical(q, 6).AsByte() & m2) | (Vector256.Equals(hm & b3, b3) & four);
                acc0 = Fma.MultiplyAdd(UnsignedDot(c0, Vector256.Load(xn)), Avx2.PermuteVar8x32(f, Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1)), acc0);
                acc1 = Fma.MultiplyAdd(UnsignedDot(c1, Vector256.Load(xn + 32)), Avx2.PermuteVar8x32(f, Vector256.Create(2, 2, 2, 2, 3, 3, 3, 3)), acc1);
                acc0 = Fma.MultiplyAdd(UnsignedDot(c2, Vector256.Load(xn + 64)), Avx2.PermuteVar8x32(f, Vector256.Create(4, 4, 4, 4, 5, 5, 5, 5)), acc0);
                acc1 = Fma.MultiplyAdd(UnsignedDot(c3, Vector256.Load(xn + 96)), Avx2.PermuteVar8x32(f, Vector256.Create(6, 6, 6, 6, 7, 7, 7, 7)), acc1);
            }
        }

        return Vector256.Sum(acc0 + acc1) - (4 * Vector256.Sum(offset));
    }

    /// <summary>
    /// Q6_K: codes 0-63 (value + 32) assembled in natural order 32 at a time; the 16 scales of a super-block are widened
    /// once, permuted into the [sub-block A ×4, sub-block B ×4] lanes of each product, and the offset of all 16 sub-blocks
    /// is two vector FMAs with the inputs' per-16 sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q6_K(byte* row, int k, in Q8Activations x)
    {
        var halves = HalfTable;
        Vector256<float> acc0 = default, acc1 = default, offset = default;
        var m4 = Vector256.Create((byte)15);
        var m2 = Vector256.Create((byte)3);
        var pairs0 = Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1);
        var pairs1 = Vector256.Create(2, 2, 2, 2, 3, 3, 3, 3);
        var pairs2 = Vector256.Create(4, 4, 4, 4, 5, 5, 5, 5);
        var pairs3 = Vector256.Create(6, 6, 6, 6, 7, 7, 7, 7);
        var supers = k / 256;
        for (var s = 0; s < supers; s++)
        {
            var p = row + (s * 210);
            var d = Vector256.Create(halves[Unsafe.ReadUnaligned<ushort>(p + 208)]);
            var sc = Vector128.Load((sbyte*)(p + 192));
            var (f0, f1) = Widen16(sc, d);
            offset = PerSixteen(f0, f1, x, s, offset);
            for (var n = 0; n < 2; n++)
            {
                var f = n == 0 ? f0 : f1;
                var qh = Vector256.Load(p + 128 + (32 * n)).AsUInt16();
                var l0 = Vector256.Load(p + (64 * n));
                var l1 = Vector256.Load(p + (64 * n) + 32);
                var b = (s * 8) + (4 * n);
                var xq = x.Q + (b * 32);
                var c0 = (l0 & m4) | Vector256.ShiftLeft(qh & m2.AsUInt16(), 4).AsByte();
                var c1 = (l1 & m4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 2) & m2.AsUInt16(), 4).AsByte();
                var c2 = (Vector256.ShiftRightLogical(l0.AsUInt16(), 4).AsByte() & m4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 4) & m2.AsUInt16(), 4).AsByte();
                var c3 = (Vector256.ShiftRightLogical(l1.AsUInt16(), 4).AsByte() & m4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 6) & m2.AsUInt16(), 4).AsByte();
                acc0 = Fma.MultiplyAdd(UnsignedDot(c0, Vector256.Load(xq)), Avx2.PermuteVar8x32(f, pairs0) * x.Scale[b], acc0);
                acc1 = Fma.MultiplyAdd(UnsignedDot(c1, Vector256.Load(xq + 32)), Avx2.PermuteVar8x32(f, pairs1) * x.Scale[b + 1], acc1);
                acc0 = Fma.MultiplyAdd(UnsignedDot(c2, Vector256.Load(xq + 64)), Avx2.PermuteVar8x32(f, pairs2) * x.Scale[b + 2], acc0);
                acc1 = Fma.MultiplyAdd(UnsignedDot(c3, Vector256.Load(xq + 96)), Avx2.PermuteVar8x32(f, pairs3) * x.Scale[b + 3], acc1);
            }
        }

        return Vector256.Sum(acc0 + acc1) - (32 * Vector256.Sum(offset));
    }

    /// <summary>
    /// The eight 6-bit scales and minimums of a Q4_K/Q5_K super-block (12 bytes at <paramref name="packedScales"/>),
    /// unpacked together as four 32-bit words: returns the scales times <paramref name="d"/> times the eight input scales,
    /// and adds the minimums' term (times <paramref name="dmin"/> and the inputs' scaled sums) to <paramref name="mins"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ScalesAndMinimums(byte* packedScales, float d, float dmin, in Q8Activations x, int s, ref Vector256<float> mins)
    {
        var u0 = Unsafe.ReadUnaligned<uint>(packedScales);
        var u1 = Unsafe.ReadUnaligned<uint>(packedScales + 4);
        var u2 = Unsafe.ReadUnaligned<uint>(packedScales + 8);
        // Bytes 0-7: the scales of sub-blocks 0-7; bytes 8-15: their minimums.
        var packed = Vector128.Create(
            u0 & 0x3f3f3f3fu,
            (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4),
            u1 & 0x3f3f3f3fu,
            ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4)).AsByte();
        var minimums = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(packed, 8)));
        mins = Fma.MultiplyAdd(minimums * Vector256.Create(dmin), Vector256.Load(x.ScaledSum + (8 * s)), mins);
        return Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(packed)) * Vector256.Create(d) * Vector256.Load(x.Scale + (8 * s));
    }

    /// <summary>Sixteen signed bytes (the per-16 scales of a super-block) as two fp32 vectors times <paramref name="scale"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> Low, Vector256<float> High) Widen16(Vector128<sbyte> values, Vector256<float> scale) =>
        (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(values)) * scale,
         Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(values, 8))) * scale);

    /// <summary>
    /// Adds <c>sum_j f_j * x.ScaledSum16[16 s + j]</c> over the 16 sub-blocks of super-block <paramref name="s"/>: the
    /// offset or minimum term of the formats with 16-long sub-blocks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PerSixteen(Vector256<float> low, Vector256<float> high, in Q8Activations x, int s, Vector256<float> acc) =>
        Fma.MultiplyAdd(high, Vector256.Load(x.ScaledSum16 + (16 * s) + 8), Fma.MultiplyAdd(low, Vector256.Load(x.ScaledSum16 + (16 * s)), acc));
}
