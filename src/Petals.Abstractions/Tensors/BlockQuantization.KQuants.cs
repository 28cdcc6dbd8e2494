using System.Runtime.Intrinsics;

namespace Petals.Tensors;

/// <content>
/// The k-quants: super-blocks of 256 values in sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32 (Q4_K, Q5_K), each sub-block
/// with an integer scale (and minimum) relative to the super-block's fp16 <c>d</c> (and <c>dmin</c>).
/// </content>
public static partial class BlockQuantization
{
    private const int QK = 256;

    // Q2_K: scales[16] (low nibble scale, high nibble minimum), qs[64] (2-bit), d, dmin.
    // Element 128c + 32j + l (l < 32) is (qs[32c + l] >> 2j) & 3; sub-block k covers elements 16k .. 16k + 15.
    private static void DequantizeQ2_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var scales = x[..16];
        var qs = x.Slice(16, 64);
        var d = Half16(x, 80);
        var min = Half16(x, 82);
        var o = 0;
        var s = 0;
        for (var c = 0; c < 2; c++)
        {
            var q = qs.Slice(32 * c, 32);
            for (var shift = 0; shift < 8; shift += 2)
            {
                for (var half = 0; half < 2; half++)
                {
                    var sc = scales[s++];
                    var dl = d * (sc & 0x0F);
                    var ml = min * (sc >> 4);
                    for (var l = 0; l < 16; l++)
                    {
                        y[o++] = (dl * ((q[(16 * half) + l] >> shift) & 3)) - ml;
                    }
                }
            }
        }
    }

    // Q3_K: hmask[32], qs[64] (low 2 bits as in Q2_K), scales[12] (sixteen 6-bit values, offset 32), d.
    // Element 128c + 32j + l: low bits (qs[32c + l] >> 2j) & 3, high bit hmask[l] bit 4c + j; a clear high bit subtracts 4.
    private static void DequantizeQ3_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var hm = x[..32];
        var qs = x.Slice(32, 64);
        var packed = x.Slice(96, 12);
        var d = Half16(x, 108);
        var o = 0;
        var s = 0;
        for (var c = 0; c < 2; c++)
        {
            var q = qs.Slice(32 * c, 32);
            for (var j = 0; j < 4; j++)
            {
                var shift = 2 * j;
                var mask = 1 << ((4 * c) + j);
                for (var half = 0; half < 2; half++)
                {
                    var dl = d * (Q3Scale(packed, s++) - 32);
                    for (var l = 16 * half; l < (16 * half) + 16; l++)
                    {
                        y[o++] = dl * (((q[l] >> shift) & 3) - ((hm[l] & mask) != 0 ? 0 : 4));
                    }
                }
            }
        }
    }

    /// <summary>The 6-bit scale <paramref name="i"/> (0..15) of a Q3_K block: low 4 bits in bytes 0..7, high 2 bits in bytes 8..11.</summary>
    private static int Q3Scale(ReadOnlySpan<byte> packed, int i)
    {
        var low = i < 8 ? packed[i] & 0x0F : packed[i - 8] >> 4;
        var high = (packed[8 + (i % 4)] >> (2 * (i / 4))) & 3;
        return low | (high << 4);
    }

    /// <summary>The 6-bit scale and minimum of sub-block <paramref name="j"/> (0..7) of a Q4_K/Q5_K block.</summary>
    private static (int Scale, int Min) Q4ScaleMin(ReadOnlySpan<byte> q, int j) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    // Q4_K: d, dmin, scales[12], qs[128]. Element 64c + l (l < 32) is qs[32c + l] & 15 (sub-block 2c), element 64c + 32 + l its high nibble.
    private static void DequantizeQ4_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var d = Half16(x, 0);
        var min = Half16(x, 2);
        var scales = x.Slice(4, 12);
        var qs = x.Slice(16, 128);
        for (var c = 0; c < 4; c++)
        {
            var (sc1, m1) = Q4ScaleMin(scales, 2 * c);
            var (sc2, m2) = Q4ScaleMin(scales, (2 * c) + 1);
            float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
            var q = qs.Slice(32 * c, 32);
            var o = y.Slice(64 * c, 64);
            for (var l = 0; l < 32; l++)
            {
                o[l] = (d1 * (q[l] & 0x0F)) - min1;
            }

            for (var l = 0; l < 32; l++)
            {
                o[32 + l] = (d2 * (q[l] >> 4)) - min2;
            }
        }
    }

    // Q5_K: d, dmin, scales[12], qh[32], qs[128]: as Q4_K, plus a fifth bit in qh[l] bit 2c (low nibble) / 2c + 1 (high nibble).
    private static void DequantizeQ5_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var d = Half16(x, 0);
        var min = Half16(x, 2);
        var scales = x.Slice(4, 12);
        var qh = x.Slice(16, 32);
        var qs = x.Slice(48, 128);
        for (var c = 0; c < 4; c++)
        {
            var (sc1, m1) = Q4ScaleMin(scales, 2 * c);
            var (sc2, m2) = Q4ScaleMin(scales, (2 * c) + 1);
            float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
            var q = qs.Slice(32 * c, 32);
            var o = y.Slice(64 * c, 64);
            int u1 = 1 << (2 * c), u2 = 2 << (2 * c);
            for (var l = 0; l < 32; l++)
            {
                o[l] = (d1 * ((q[l] & 0x0F) + ((qh[l] & u1) != 0 ? 16 : 0))) - min1;
            }

            for (var l = 0; l < 32; l++)
            {
                o[32 + l] = (d2 * ((q[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0))) - min2;
            }
        }
    }

    // Q6_K: ql[128], qh[64], scales[16] (int8), d. In each half c of 128 elements, element 32k + l (k < 4, l < 32) has its
    // low nibble in ql[64c + l + 32 (k &amp; 1)] (high nibble when k >= 2) and its top 2 bits in qh[32c + l] bits 2k; offset 32.
    private static void DequantizeQ6_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var d = Half16(x, 208);
        for (var c = 0; c < 2; c++)
        {
            var ql = x.Slice(64 * c, 64);
            var qh = x.Slice(128 + (32 * c), 32);
            var sc = x.Slice(192 + (8 * c), 8);
            var o = y.Slice(128 * c, 128);
            for (var l = 0; l < 32; l++)
            {
                var s = l / 16;
                var q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                var q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                var q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                var q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                o[l] = d * (sbyte)sc[s] * q1;
                o[l + 32] = d * (sbyte)sc[s + 2] * q2;
                o[l + 64] = d * (sbyte)sc[s + 4] * q3;
                o[l + 96] = d * (sbyte)sc[s + 6] * q4;
            }
        }
    }

    // ---- Quantizers ----

    private static void QuantizeQ4_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> levels = stackalloc byte[QK];
        Span<byte> sc = stackalloc byte[8];
        Span<byte> mn = stackalloc byte[8];
        var (d, dmin) = QuantizeAffine(x, 32, 15, 63, levels, sc, mn);
        WriteHalf(y, 0, d);
        WriteHalf(y, 2, dmin);
        PackQ4Scales(sc, mn, y.Slice(4, 12));
        var qs = y.Slice(16, 128);
        for (var c = 0; c < 4; c++)
        {
            for (var l = 0; l < 32; l++)
            {
                qs[(32 * c) + l] = (byte)(levels[(64 * c) + l] | (levels[(64 * c) + 32 + l] << 4));
            }
        }
    }

    private static void QuantizeQ5_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> levels = stackalloc byte[QK];
        Span<byte> sc = stackalloc byte[8];
        Span<byte> mn = stackalloc byte[8];
        var (d, dmin) = QuantizeAffine(x, 32, 31, 63, levels, sc, mn);
        WriteHalf(y, 0, d);
        WriteHalf(y, 2, dmin);
        PackQ4Scales(sc, mn, y.Slice(4, 12));
        var qh = y.Slice(16, 32);
        var qs = y.Slice(48, 128);
        qh.Clear();
        for (var c = 0; c < 4; c++)
        {
            for (var l = 0; l < 32; l++)
            {
                int lo = levels[(64 * c) + l], hi = levels[(64 * c) + 32 + l];
                qs[(32 * c) + l] = (byte)((lo & 0x0F) | ((hi & 0x0F) << 4));
                qh[l] |= (byte)(((lo >> 4) << (2 * c)) | ((hi >> 4) << ((2 * c) + 1)));
            }
        }
    }

    private static void QuantizeQ2_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> levels = stackalloc byte[QK];
        Span<byte> sc = stackalloc byte[16];
        Span<byte> mn = stackalloc byte[16];
        var (d, dmin) = QuantizeAffine(x, 16, 3, 15, levels, sc, mn);
        for (var k = 0; k < 16; k++)
        {
            y[k] = (byte)(sc[k] | (mn[k] << 4));
        }

        PackTwoBits(levels, y.Slice(16, 64));
        WriteHalf(y, 80, d);
        WriteHalf(y, 82, dmin);
    }

    private static void QuantizeQ3_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> levels = stackalloc byte[QK];
        Span<int> sc = stackalloc int[16];
        var d = QuantizeSymmetric(x, 4, 3, 32, 31, levels, sc);
        var hm = y[..32];
        hm.Clear();
        for (var c = 0; c < 2; c++)
        {
            for (var j = 0; j < 4; j++)
            {
                for (var l = 0; l < 32; l++)
                {
                    if (levels[(128 * c) + (32 * j) + l] > 3)
                    {
                        hm[l] |= (byte)(1 << ((4 * c) + j));
                    }
                }
            }
        }

        for (var i = 0; i < QK; i++)
        {
            levels[i] &= 3;
        }

        PackTwoBits(levels, y.Slice(32, 64));
        var packed = y.Slice(96, 12);
        packed.Clear();
        for (var i = 0; i < 16; i++)
        {
            var v = sc[i] + 32;
            packed[i % 8] |= (byte)((v & 0x0F) << (i < 8 ? 0 : 4));
            packed[8 + (i % 4)] |= (byte)((v >> 4) << (2 * (i / 4)));
        }

        WriteHalf(y, 108, d);
    }

    private static void QuantizeQ6_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> levels = stackalloc byte[QK];
        Span<int> sc = stackalloc int[16];
        var d = QuantizeSymmetric(x, 32, 31, 128, 127, levels, sc);
        for (var c = 0; c < 2; c++)
        {
            var ql = y.Slice(64 * c, 64);
            var qh = y.Slice(128 + (32 * c), 32);
            var l0 = levels.Slice(128 * c, 128);
            for (var l = 0; l < 32; l++)
            {
                ql[l] = (byte)((l0[l] & 0x0F) | ((l0[l + 64] & 0x0F) << 4));
                ql[l + 32] = (byte)((l0[l + 32] & 0x0F) | ((l0[l + 96] & 0x0F) << 4));
                qh[l] = (byte)((l0[l] >> 4) | ((l0[l + 32] >> 4) << 2) | ((l0[l + 64] >> 4) << 4) | ((l0[l + 96] >> 4) << 6));
            }
        }

        for (var i = 0; i < 16; i++)
        {
            y[192 + i] = (byte)(sbyte)sc[i];
        }

        WriteHalf(y, 208, d);
    }

    private static void PackQ4Scales(ReadOnlySpan<byte> sc, ReadOnlySpan<byte> mn, Span<byte> q)
    {
        q.Clear();
        for (var j = 0; j < 8; j++)
        {
            if (j < 4)
            {
                q[j] |= (byte)(sc[j] & 63);
                q[j + 4] |= (byte)(mn[j] & 63);
            }
            else
            {
                q[j + 4] = (byte)((sc[j] & 0x0F) | ((mn[j] & 0x0F) << 4));
                q[j - 4] |= (byte)((sc[j] >> 4) << 6);
                q[j] |= (byte)((mn[j] >> 4) << 6);
            }
        }
    }

    /// <summary>Packs 256 2-bit levels: element 128c + 32j + l goes to byte 32c + l, bits 2j.</summary>
    private static void PackTwoBits(ReadOnlySpan<byte> levels, Span<byte> qs)
    {
        for (var c = 0; c < 2; c++)
        {
            for (var l = 0; l < 32; l++)
            {
                var b = (128 * c) + l;
                qs[(32 * c) + l] = (byte)(levels[b] | (levels[b + 32] << 2) | (levels[b + 64] << 4) | (levels[b + 96] << 6));
            }
        }
    }

    /// <summary>
    /// Affine k-quant search (Q2_K, Q4_K, Q5_K): value ≈ d·sc·q − dmin·mn with q in 0..<paramref name="nmax"/> and sc, mn in
    /// 0..<paramref name="scaleMax"/>. Each sub-block gets a least-squares (scale, min) fit from several starting scales;
    /// the sub-block scales and minimums are then quantized against the super-block's fp16 d and dmin, and each sub-block
    /// picks, among the neighbouring integer scale and minimum, the pair with the smallest squared error.
    /// </summary>
    private static (float D, float DMin) QuantizeAffine(ReadOnlySpan<float> x, int sub, int nmax, int scaleMax, Span<byte> levels, Span<byte> sc, Span<byte> mn)
    {
        var subs = QK / sub;
        Span<float> scales = stackalloc float[subs];
        Span<float> mins = stackalloc float[subs];
        float maxScale = 0, maxMin = 0;
        for (var k = 0; k < subs; k++)
        {
            (scales[k], mins[k]) = FitAffine(x.Slice(k * sub, sub), nmax);
            maxScale = MathF.Max(maxScale, scales[k]);
            maxMin = MathF.Max(maxMin, mins[k]);
        }

        var d = RoundHalf(maxScale / scaleMax);
        var dmin = RoundHalf(maxMin / scaleMax);
        for (var k = 0; k < subs; k++)
        {
            var xs = x.Slice(k * sub, sub);
            var s0 = d > 0 ? Nearest(scales[k] / d) : 0;
            var m0 = dmin > 0 ? Nearest(mins[k] / dmin) : 0;
            var best = float.MaxValue;
            int bestS = 0, bestM = 0;
            for (var s = Math.Max(0, s0 - 1); s <= Math.Min(scaleMax, s0 + 1); s++)
            {
                for (var m = Math.Max(0, m0 - 1); m <= Math.Min(scaleMax, m0 + 1); m++)
                {
                    var err = AffineError(xs, d * s, dmin * m, nmax, default);
                    if (err < best)
                    {
                        best = err;
                        bestS = s;
                        bestM = m;
                    }
                }
            }

            sc[k] = (byte)bestS;
            mn[k] = (byte)bestM;
            AffineError(xs, d * bestS, dmin * bestM, nmax, levels.Slice(k * sub, sub));
        }

        return (d, dmin);
    }

    // The searches below run on Vector256 (software-emulated where the hardware lacks it, with the same results): sub-blocks
    // are 16 or 32 values, whole vectors of 8. Quantizing a 7B-sized block at server start spends its time here.

    /// <summary>Squared error of coding <paramref name="x"/> as scale·q − min with the nearest q; writes the q when asked.</summary>
    private static float AffineError(ReadOnlySpan<float> x, float scale, float min, int nmax, Span<byte> levels)
    {
        var inverse = Vector256.Create(scale > 0 ? 1f / scale : 0f);
        var vmin = Vector256.Create(min);
        var vscale = Vector256.Create(scale);
        var vmax = Vector256.Create((float)nmax);
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < x.Length; i += 8)
        {
            var xv = Vector256.Create(x.Slice(i, 8));
            var q = Vector256.Min(vmax, Vector256.Max(Vector256<float>.Zero, Vector256.Round((xv + vmin) * inverse)));
            var e = xv - ((vscale * q) - vmin);
            acc += e * e;
            if (!levels.IsEmpty)
            {
                StoreLevels(Vector256.ConvertToInt32(q), levels.Slice(i, 8));
            }
        }

        return Vector256.Sum(acc);
    }

    private static void StoreLevels(Vector256<int> q, Span<byte> levels)
    {
        for (var k = 0; k < 8; k++)
        {
            levels[k] = (byte)q.GetElement(k);
        }
    }

    /// <summary>Least-squares (scale ≥ 0, min ≥ 0) for value ≈ scale·q − min, q in 0..nmax, from 15 starting scales.</summary>
    private static (float Scale, float Min) FitAffine(ReadOnlySpan<float> x, int nmax)
    {
        var lo = 0f;
        var hi = float.MinValue;
        var sumX = 0f;
        foreach (var v in x)
        {
            lo = MathF.Min(lo, v);
            hi = MathF.Max(hi, v);
            sumX += v;
        }

        if (hi <= lo)
        {
            return (0f, -lo);
        }

        var bestScale = (hi - lo) / nmax;
        var bestMin = -lo;
        var bestErr = AffineError(x, bestScale, bestMin, nmax, default);
        var vmax = Vector256.Create((float)nmax);
        for (var step = -4; step <= 10; step++)
        {
            var scale = (hi - lo) / (nmax + (0.1f * step));
            var min = -lo;
            for (var iteration = 0; iteration < 2; iteration++)
            {
                // Assign levels for (scale, min), then solve min over (a, b) of sum (x - a q - b)^2 with b <= 0; min = -b.
                var inverse = Vector256.Create(1f / scale);
                var vmin = Vector256.Create(min);
                Vector256<float> vq = default, vqq = default, vxq = default;
                for (var i = 0; i < x.Length; i += 8)
                {
                    var xv = Vector256.Create(x.Slice(i, 8));
                    var q = Vector256.Min(vmax, Vector256.Max(Vector256<float>.Zero, Vector256.Round((xv + vmin) * inverse)));
                    vq += q;
                    vqq += q * q;
                    vxq += xv * q;
                }

                double sq = Vector256.Sum(vq), sqq = Vector256.Sum(vqq), sxq = Vector256.Sum(vxq);
                var n = x.Length;
                var det = (n * sqq) - (sq * sq);
                if (det <= 0)
                {
                    break;
                }

                var a = ((n * sxq) - (sq * sumX)) / det;
                var b = (sumX - (a * sq)) / n;
                if (b > 0)
                {
                    b = 0;
                    a = sqq > 0 ? sxq / sqq : 0;
                }

                if (!(a > 0))
                {
                    break;
                }

                scale = (float)a;
                min = (float)-b;
            }

            var err = AffineError(x, scale, min, nmax, default);
            if (err < bestErr)
            {
                bestErr = err;
                bestScale = scale;
                bestMin = min;
            }
        }

        return (bestScale, bestMin);
    }

    /// <summary>
    /// Symmetric k-quant search (Q3_K, Q6_K): value ≈ d·sc·q with q in −<paramref name="qneg"/>..<paramref name="qpos"/>
    /// (stored as q + qneg in <paramref name="levels"/>) and sc in −<paramref name="sneg"/>..<paramref name="spos"/>.
    /// </summary>
    private static float QuantizeSymmetric(ReadOnlySpan<float> x, int qneg, int qpos, int sneg, int spos, Span<byte> levels, Span<int> sc)
    {
        Span<float> scales = stackalloc float[16];
        var maxAbs = 0f;
        var max = 0f;
        for (var k = 0; k < 16; k++)
        {
            scales[k] = FitSymmetric(x.Slice(16 * k, 16), qneg, qpos);
            if (MathF.Abs(scales[k]) > maxAbs)
            {
                maxAbs = MathF.Abs(scales[k]);
                max = scales[k];
            }
        }

        // The largest sub-block scale maps to -sneg, the end of the integer range with one more value.
        var d = RoundHalf(max / -sneg);
        for (var k = 0; k < 16; k++)
        {
            var xs = x.Slice(16 * k, 16);
            var s0 = d != 0 ? Nearest(scales[k] / d) : 0;
            var best = float.MaxValue;
            var bestS = 0;
            for (var s = Math.Max(-sneg, s0 - 1); s <= Math.Min(spos, s0 + 1); s++)
            {
                var err = SymmetricError(xs, d * s, qneg, qpos, default);
                if (err < best)
                {
                    best = err;
                    bestS = s;
                }
            }

            sc[k] = bestS;
            SymmetricError(xs, d * bestS, qneg, qpos, levels.Slice(16 * k, 16));
        }

        return d;
    }

    private static float SymmetricError(ReadOnlySpan<float> x, float scale, int qneg, int qpos, Span<byte> levels)
    {
        var inverse = Vector256.Create(scale != 0 ? 1f / scale : 0f);
        var vscale = Vector256.Create(scale);
        var lo = Vector256.Create((float)-qneg);
        var hi = Vector256.Create((float)qpos);
        var offset = Vector256.Create(qneg);
        var acc = Vector256<float>.Zero;
        for (var i = 0; i < x.Length; i += 8)
        {
            var xv = Vector256.Create(x.Slice(i, 8));
            var q = Vector256.Min(hi, Vector256.Max(lo, Vector256.Round(xv * inverse)));
            var e = xv - (vscale * q);
            acc += e * e;
            if (!levels.IsEmpty)
            {
                StoreLevels(Vector256.ConvertToInt32(q) + offset, levels.Slice(i, 8));
            }
        }

        return Vector256.Sum(acc);
    }

    /// <summary>Least-squares scale (either sign) for value ≈ scale·q, q in −qneg..qpos, from starting scales around the largest magnitude.</summary>
    private static float FitSymmetric(ReadOnlySpan<float> x, int qneg, int qpos)
    {
        var max = SignedAbsMax(x);
        if (max == 0)
        {
            return 0;
        }

        var bestScale = max / -qneg;
        var bestErr = SymmetricError(x, bestScale, qneg, qpos, default);
        var lo = Vector256.Create((float)-qneg);
        var hi = Vector256.Create((float)qpos);
        for (var step = -6; step <= 6; step++)
        {
            foreach (var end in (ReadOnlySpan<float>)[-qneg, qpos])
            {
                var scale = max / (end + (MathF.Sign(end) * 0.1f * step));
                var inverse = Vector256.Create(1f / scale);
                Vector256<float> vxq = default, vqq = default;
                for (var i = 0; i < x.Length; i += 8)
                {
                    var xv = Vector256.Create(x.Slice(i, 8));
                    var q = Vector256.Min(hi, Vector256.Max(lo, Vector256.Round(xv * inverse)));
                    vxq += xv * q;
                    vqq += q * q;
                }

                var sqq = Vector256.Sum(vqq);
                if (sqq > 0)
                {
                    scale = Vector256.Sum(vxq) / sqq;
                }

                var err = SymmetricError(x, scale, qneg, qpos, default);
                if (err < bestErr)
                {
                    bestErr = err;
                    bestScale = scale;
                }
            }
        }

        return bestScale;
    }
}
