using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Petals.Backends.Cpu.Kernels;

/// <summary>
/// Managed kernels for <c>y = x W^T</c> (a linear layer) where <c>x</c> is <c>[m, k]</c> fp32 and <c>W</c> is
/// <c>[n, k]</c> row-major in any <see cref="IWeightFormat"/>. Each call computes a slice of output columns
/// (weight rows), so callers partition weight rows across threads and every weight row is streamed once per
/// K block. Tiles of 4 weight rows × 4 tokens reuse each widened weight vector four times (prefill); one token
/// streams 4 rows at a time with 8 independent accumulators (decode).
/// </summary>
internal static unsafe class LinearKernels
{
    /// <summary>The K block: inputs of 4 tokens and 4 weight rows of this length stay in L1/L2 while a tile runs.</summary>
    internal const int KBlock = 2048;

    /// <summary>
    /// Computes <c>y[t, r] (+)= sum_i x[t, i] * W[r, i]</c> for rows <c>r</c> in <c>[rowStart, rowEnd)</c> and all <c>t &lt; m</c>.
    /// </summary>
    /// <param name="x">Inputs <c>[m, k]</c>, row stride <paramref name="k"/>.</param>
    /// <param name="m">Number of input rows (tokens).</param>
    /// <param name="k">Input features.</param>
    /// <param name="w">Weight bytes, <c>[n, k]</c> row-major.</param>
    /// <param name="y">Outputs, row stride <paramref name="ldy"/>.</param>
    /// <param name="ldy">Row stride of <paramref name="y"/>.</param>
    /// <param name="rowStart">First weight row (output column) to compute.</param>
    /// <param name="rowEnd">Weight row past the last one.</param>
    /// <param name="accumulate">Add to <paramref name="y"/> instead of overwriting it.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Compute<TF>(float* x, int m, int k, byte* w, float* y, int ldy, int rowStart, int rowEnd, bool accumulate)
        where TF : struct, IWeightFormat
    {
        var rowBytes = (nint)k * TF.ElementSize;
        // Decode (a few tokens) streams each row whole: splitting it into K blocks re-reads the inputs for nothing and
        // breaks the sequential stream the hardware prefetcher follows (measured: 12 % of an f32 decode step).
        var kBlock = m < 4 ? k : KBlock;
        for (var k0 = 0; k0 < k; k0 += kBlock)
        {
            var kl = Math.Min(kBlock, k - k0);
            var acc = accumulate || k0 > 0;
            var r = rowStart;
            for (; r + 4 <= rowEnd; r += 4)
            {
                var w0 = w + (r * rowBytes) + ((nint)k0 * TF.ElementSize);
                var t = 0;
                if (Vector512.IsHardwareAccelerated)
                {
                    for (; t + 4 <= m; t += 4)
                    {
                        Tile4x4V512<TF>(x + ((nint)t * k) + k0, k, w0, rowBytes, kl, y + ((nint)t * ldy) + r, ldy, acc);
                    }
                }

                for (; t < m; t++)
                {
                    Tile4x1<TF>(x + ((nint)t * k) + k0, w0, rowBytes, kl, y + ((nint)t * ldy) + r, acc);
                }
            }

            for (; r < rowEnd; r++)
            {
                var w0 = w + (r * rowBytes) + ((nint)k0 * TF.ElementSize);
                for (var t = 0; t < m; t++)
                {
                    var d = Dot<TF>(x + ((nint)t * k) + k0, w0, kl);
                    ref var dst = ref y[((nint)t * ldy) + r];
                    dst = acc ? dst + d : d;
                }
            }
        }
    }

    /// <summary>Dot product of fp32 <paramref name="x"/> with one weight row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    internal static float Dot<TF>(float* x, byte* w, int k)
        where TF : struct, IWeightFormat
    {
        var es = TF.ElementSize;
        var i = 0;
        var sum = 0f;
        if (Vector512.IsHardwareAccelerated && k >= 16)
        {
            var a0 = Vector512<float>.Zero;
            var a1 = Vector512<float>.Zero;
            for (; i + 32 <= k; i += 32)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), TF.Load16(w + (i * es)), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 16), TF.Load16(w + ((i + 16) * es)), a1);
            }

            for (; i + 16 <= k; i += 16)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), TF.Load16(w + (i * es)), a0);
            }

            sum = Vector512.Sum(a0 + a1);
        }
        else if (Vector256.IsHardwareAccelerated && k >= 8)
        {
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            for (; i + 16 <= k; i += 16)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), TF.Load8(w + (i * es)), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 8), TF.Load8(w + ((i + 8) * es)), a1);
            }

            for (; i + 8 <= k; i += 8)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), TF.Load8(w + (i * es)), a0);
            }

            sum = Vector256.Sum(a0 + a1);
        }

        for (; i < k; i++)
        {
            sum = MathF.FusedMultiplyAdd(x[i], TF.Load1(w + (i * es)), sum);
        }

        return sum;
    }

    /// <summary>One token against four weight rows: each input vector is loaded once for four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x1<TF>(float* x, byte* w0, nint rowBytes, int k, float* y, bool acc)
        where TF : struct, IWeightFormat
    {
        var es = TF.ElementSize;
        byte* w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        var i = 0;
        if (Vector512.IsHardwareAccelerated && k >= 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
            for (; i + 32 <= k; i += 32)
            {
                var xa = Vector512.Load(x + i);
                var xb = Vector512.Load(x + i + 16);
                var o = i * es;
                var o2 = (i + 16) * es;
                a0 = Vector512.FusedMultiplyAdd(xa, TF.Load16(w0 + o), a0);
                a1 = Vector512.FusedMultiplyAdd(xa, TF.Load16(w1 + o), a1);
                a2 = Vector512.FusedMultiplyAdd(xa, TF.Load16(w2 + o), a2);
                a3 = Vector512.FusedMultiplyAdd(xa, TF.Load16(w3 + o), a3);
                b0 = Vector512.FusedMultiplyAdd(xb, TF.Load16(w0 + o2), b0);
                b1 = Vector512.FusedMultiplyAdd(xb, TF.Load16(w1 + o2), b1);
                b2 = Vector512.FusedMultiplyAdd(xb, TF.Load16(w2 + o2), b2);
                b3 = Vector512.FusedMultiplyAdd(xb, TF.Load16(w3 + o2), b3);
            }

            for (; i + 16 <= k; i += 16)
            {
                var xa = Vector512.Load(x + i);
                var o = i * es;
                a0 = Vector512.FusedMultiplyAdd(xa, TF.Load16(w0 + o), a0);
                a1 = Vector512.FusedMultiplyAdd(xa, TF.Load16(w1 + o), a1);
                a2 = Vector512.FusedMultiplyAdd(xa, TF.Load16(w2 + o), a2);
                a3 = Vector512.FusedMultiplyAdd(xa, TF.Load16(w3 + o), a3);
            }

            s0 = Vector512.Sum(a0 + b0);
            s1 = Vector512.Sum(a1 + b1);
            s2 = Vector512.Sum(a2 + b2);
            s3 = Vector512.Sum(a3 + b3);
        }
        else if (Vector256.IsHardwareAccelerated && k >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 8 <= k; i += 8)
            {
                var xa = Vector256.Load(x + i);
                var o = i * es;
                a0 = Vector256.FusedMultiplyAdd(xa, TF.Load8(w0 + o), a0);
                a1 = Vector256.FusedMultiplyAdd(xa, TF.Load8(w1 + o), a1);
                a2 = Vector256.FusedMultiplyAdd(xa, TF.Load8(w2 + o), a2);
                a3 = Vector256.FusedMultiplyAdd(xa, TF.Load8(w3 + o), a3);
            }

            s0 = Vector256.Sum(a0);
            s1 = Vector256.Sum(a1);
            s2 = Vector256.Sum(a2);
            s3 = Vector256.Sum(a3);
        }

        for (; i < k; i++)
        {
            var xi = x[i];
            var o = i * es;
            s0 = MathF.FusedMultiplyAdd(xi, TF.Load1(w0 + o), s0);
            s1 = MathF.FusedMultiplyAdd(xi, TF.Load1(w1 + o), s1);
            s2 = MathF.FusedMultiplyAdd(xi, TF.Load1(w2 + o), s2);
            s3 = MathF.FusedMultiplyAdd(xi, TF.Load1(w3 + o), s3);
        }

        if (acc)
        {
            y[0] += s0;
            y[1] += s1;
            y[2] += s2;
            y[3] += s3;
        }
        else
        {
            y[0] = s0;
            y[1] = s1;
            y[2] = s2;
            y[3] = s3;
        }
    }

    /// <summary>Four tokens against four weight rows: 16 accumulators, each widened weight vector used four times.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x4V512<TF>(float* x0, int ldx, byte* w0, nint rowBytes, int k, float* y, int ldy, bool acc)
        where TF : struct, IWeightFormat
    {
        var es = TF.ElementSize;
        byte* w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
        float* x1 = x0 + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        var i = 0;
        for (; i + 16 <= k; i += 16)
        {
            var o = i * es;
            var v0 = TF.Load16(w0 + o);
            var v1 = TF.Load16(w1 + o);
            var v2 = TF.Load16(w2 + o);
            var v3 = TF.Load16(w3 + o);
            var a = Vector512.Load(x0 + i);
            c00 = Vector512.FusedMultiplyAdd(a, v0, c00);
            c01 = Vector512.FusedMultiplyAdd(a, v1, c01);
            c02 = Vector512.FusedMultiplyAdd(a, v2, c02);
            c03 = Vector512.FusedMultiplyAdd(a, v3, c03);
            a = Vector512.Load(x1 + i);
            c10 = Vector512.FusedMultiplyAdd(a, v0, c10);
            c11 = Vector512.FusedMultiplyAdd(a, v1, c11);
            c12 = Vector512.FusedMultiplyAdd(a, v2, c12);
            c13 = Vector512.FusedMultiplyAdd(a, v3, c13);
            a = Vector512.Load(x2 + i);
            c20 = Vector512.FusedMultiplyAdd(a, v0, c20);
            c21 = Vector512.FusedMultiplyAdd(a, v1, c21);
            c22 = Vector512.FusedMultiplyAdd(a, v2, c22);
            c23 = Vector512.FusedMultiplyAdd(a, v3, c23);
            a = Vector512.Load(x3 + i);
            c30 = Vector512.FusedMultiplyAdd(a, v0, c30);
            c31 = Vector512.FusedMultiplyAdd(a, v1, c31);
            c32 = Vector512.FusedMultiplyAdd(a, v2, c32);
            c33 = Vector512.FusedMultiplyAdd(a, v3, c33);
        }

        Store(y, acc, c00, c01, c02, c03, x0, w0, w1, w2, w3, i, k, es);
        Store(y + ldy, acc, c10, c11, c12, c13, x1, w0, w1, w2, w3, i, k, es);
        Store(y + (2 * ldy), acc, c20, c21, c22, c23, x2, w0, w1, w2, w3, i, k, es);
        Store(y + (3 * ldy), acc, c30, c31, c32, c33, x3, w0, w1, w2, w3, i, k, es);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Store(float* yr, bool acc, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3, float* xr, byte* w0, byte* w1, byte* w2, byte* w3, int i, int k, int es)
        {
            float s0 = Vector512.Sum(a0), s1 = Vector512.Sum(a1), s2 = Vector512.Sum(a2), s3 = Vector512.Sum(a3);
            for (; i < k; i++)
            {
                var xi = xr[i];
                var o = i * es;
                s0 = MathF.FusedMultiplyAdd(xi, TF.Load1(w0 + o), s0);
                s1 = MathF.FusedMultiplyAdd(xi, TF.Load1(w1 + o), s1);
                s2 = MathF.FusedMultiplyAdd(xi, TF.Load1(w2 + o), s2);
                s3 = MathF.FusedMultiplyAdd(xi, TF.Load1(w3 + o), s3);
            }

            if (acc)
            {
                yr[0] += s0;
                yr[1] += s1;
                yr[2] += s2;
                yr[3] += s3;
            }
            else
            {
                yr[0] = s0;
                yr[1] = s1;
                yr[2] = s2;
                yr[3] = s3;
            }
        }
    }
}
