using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Petals.Backends.Cpu.Kernels;

/// <summary>
/// The compute-bound product of prefill, <c>y = x W^T</c> for many tokens: the inputs are packed once per product
/// into panels of <see cref="TokenTile"/> tokens laid out <c>[k][token]</c> (shared by all threads), and each thread
/// widens (<see cref="IWeightRows.Widen"/>: dense or block-quantized) <see cref="RowTile"/> weight rows × <see cref="KBlock"/> columns to fp32 at a time (so bf16/f16 conversion
/// is paid once per weight element, not once per token) and runs a 6 × 32 outer-product micro-kernel: per k, two
/// input vectors and six broadcast weights feed twelve FMA accumulators.
/// </summary>
internal static unsafe class PackedGemm
{
    /// <summary>Tokens per packed input panel (two 16-lane vectors).</summary>
    public const int TokenTile = 32;

    /// <summary>Weight rows per micro-kernel tile.</summary>
    public const int RowTile = 6;

    /// <summary>Columns per K block: one weight tile (6 × 512 fp32 = 12 KiB) stays in L1, one input panel block (64 KiB) in L2.</summary>
    public const int KBlock = 4096;

    /// <summary>Token panels swept per pass of the weight rows (256 tokens: at most 4 MiB of packed inputs, within L3).</summary>
    public const int PanelGroup = 8;

    /// <summary>Floats of per-thread scratch that <see cref="Compute{TF}"/> needs.</summary>
    public const int ScratchFloats = (RowTile * KBlock) + (RowTile * TokenTile);

    /// <summary>Floats that the packed form of <c>[m, k]</c> inputs occupies.</summary>
    public static long PackedSize(int m, int k) => (long)Panels(m) * TokenTile * k;

    /// <summary>Number of token panels.</summary>
    public static int Panels(int m) => (m + TokenTile - 1) / TokenTile;

    /// <summary>
    /// Whether a register-blocked micro-kernel runs here (Vector512, or Vector256 with hardware FMA). Without one the
    /// managed GEMM falls back to scalar loops, and a native BLAS is the better choice for large fp32 products.
    /// </summary>
    public static bool HasFastMicroKernel =>
        Vector512.IsHardwareAccelerated || (Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported);

    /// <summary>Packs <c>x[m, k]</c> into panels <c>xp[panel][k][32]</c>, zero-padding the last panel's missing tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackInput(float* x, int m, int k, float* xp)
    {
        var panels = Panels(m);
        for (var p = 0; p < panels; p++)
        {
            var dst = xp + ((long)p * k * TokenTile);
            for (var lane = 0; lane < TokenTile; lane++)
            {
                var t = (p * TokenTile) + lane;
                if (t < m)
                {
                    var src = x + ((long)t * k);
                    for (var i = 0; i < k; i++)
                    {
                        dst[((long)i * TokenTile) + lane] = src[i];
                    }
                }
                else
                {
                    for (var i = 0; i < k; i++)
                    {
                        dst[((long)i * TokenTile) + lane] = 0;
                    }
                }
            }
        }
    }

    /// <summary>
    /// Computes <c>y[t, r] (+)= sum_i x[t, i] W[r, i]</c> for rows <c>[rowStart, rowEnd)</c> from packed inputs <paramref name="xp"/>.
    /// </summary>
    /// <param name="xp">Inputs packed by <see cref="PackInput"/>.</param>
    /// <param name="m">Tokens.</param>
    /// <param name="k">Input features.</param>
    /// <param name="w">Weights <c>[n, k]</c> row-major.</param>
    /// <param name="y">Outputs with row stride <paramref name="ldy"/>.</param>
    /// <param name="ldy">Row stride of <paramref name="y"/>.</param>
    /// <param name="rowStart">First weight row.</param>
    /// <param name="rowEnd">Weight row past the last.</param>
    /// <param name="accumulate">Add to <paramref name="y"/>.</param>
    /// <param name="scratch">This thread's <see cref="ScratchFloats"/> floats.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Compute<TRows>(float* xp, int m, int k, byte* w, float* y, int ldy, int rowStart, int rowEnd, bool accumulate, float* scratch)
        where TRows : struct, IWeightRows
    {
        var panels = Panels(m);
        var wbuf = scratch;
        var tile = scratch + (RowTile * KBlock);
        var rowBytes = TRows.RowBytes(k);
        var path = Quant.KernelPaths.Best;
        for (var k0 = 0; k0 < k; k0 += KBlock)
        {
            var kl = Math.Min(KBlock, k - k0);
            var acc = accumulate || k0 > 0;
            // Panels are taken a group at a time so that the inputs one row tile sweeps stay in cache for long prompts.
            for (var p0 = 0; p0 < panels; p0 += PanelGroup)
            {
                var p1 = Math.Min(panels, p0 + PanelGroup);
                for (var r = rowStart; r < rowEnd; r += RowTile)
                {
                    var rows = Math.Min(RowTile, rowEnd - r);
                    for (var j = 0; j < rows; j++)
                    {
                        TRows.Widen(w + ((r + j) * rowBytes), k0, kl, wbuf + (j * KBlock), path);
                    }

                    for (var p = p0; p < p1; p++)
                    {
                        var panel = xp + ((((long)p * k) + k0) * TokenTile);
                        if (rows == RowTile)
                        {
                            Micro6x32(panel, wbuf, KBlock, kl, tile);
                        }
                        else
                        {
                            for (var j = 0; j < rows; j++)
                            {
                                Micro1x32(panel, wbuf + (j * KBlock), kl, tile + (j * TokenTile));
                            }
                        }

                        var t0 = p * TokenTile;
                        var tokens = Math.Min(TokenTile, m - t0);
                        for (var j = 0; j < rows; j++)
                        {
                            var src = tile + (j * TokenTile);
                            var dst = y + ((long)t0 * ldy) + r + j;
                            if (acc)
                            {
                                for (var t = 0; t < tokens; t++)
                                {
                                    dst[(long)t * ldy] += src[t];
                                }
                            }
                            else
                            {
                                for (var t = 0; t < tokens; t++)
                                {
                                    dst[(long)t * ldy] = src[t];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>Six weight rows (fp32, row stride <paramref name="stride"/>) × 32 packed tokens over <paramref name="kl"/> columns, into <c>tile[6][32]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Micro6x32(float* panel, float* wbuf, int stride, int kl, float* tile)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
            Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
            float* w0 = wbuf, w1 = w0 + stride, w2 = w1 + stride, w3 = w2 + stride, w4 = w3 + stride, w5 = w4 + stride;
            for (var i = 0; i < kl; i++)
            {
                var x0 = Vector512.Load(panel + (i * TokenTile));
                var x1 = Vector512.Load(panel + (i * TokenTile) + 16);
                var b = Vector512.Create(w0[i]);
                c00 = Vector512.FusedMultiplyAdd(b, x0, c00);
                c01 = Vector512.FusedMultiplyAdd(b, x1, c01);
                b = Vector512.Create(w1[i]);
                c10 = Vector512.FusedMultiplyAdd(b, x0, c10);
                c11 = Vector512.FusedMultiplyAdd(b, x1, c11);
                b = Vector512.Create(w2[i]);
                c20 = Vector512.FusedMultiplyAdd(b, x0, c20);
                c21 = Vector512.FusedMultiplyAdd(b, x1, c21);
                b = Vector512.Create(w3[i]);
                c30 = Vector512.FusedMultiplyAdd(b, x0, c30);
                c31 = Vector512.FusedMultiplyAdd(b, x1, c31);
                b = Vector512.Create(w4[i]);
                c40 = Vector512.FusedMultiplyAdd(b, x0, c40);
                c41 = Vector512.FusedMultiplyAdd(b, x1, c41);
                b = Vector512.Create(w5[i]);
                c50 = Vector512.FusedMultiplyAdd(b, x0, c50);
                c51 = Vector512.FusedMultiplyAdd(b, x1, c51);
            }

            c00.Store(tile);
            c01.Store(tile + 16);
            c10.Store(tile + 32);
            c11.Store(tile + 48);
            c20.Store(tile + 64);
            c21.Store(tile + 80);
            c30.Store(tile + 96);
            c31.Store(tile + 112);
            c40.Store(tile + 128);
            c41.Store(tile + 144);
            c50.Store(tile + 160);
            c51.Store(tile + 176);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            // 16 ymm registers: three passes of 2 rows × 32 tokens (8 accumulators, 4 inputs, 1 broadcast).
            for (var j = 0; j < RowTile; j += 2)
            {
                Micro2x32V256(panel, wbuf + (j * stride), stride, kl, tile + (j * TokenTile));
            }
        }
        else
        {
            for (var j = 0; j < RowTile; j++)
            {
                Micro1x32(panel, wbuf + (j * stride), kl, tile + (j * TokenTile));
            }
        }
    }

    /// <summary>Two weight rows (row stride <paramref name="stride"/>) × 32 packed tokens with Vector256, into <c>tile[2][32]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Micro2x32V256(float* panel, float* wbuf, int stride, int kl, float* tile)
    {
        Vector256<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector256<float> c10 = default, c11 = default, c12 = default, c13 = default;
        var w0 = wbuf;
        var w1 = wbuf + stride;
        for (var i = 0; i < kl; i++)
        {
            var px = panel + (i * TokenTile);
            var x0 = Vector256.Load(px);
            var x1 = Vector256.Load(px + 8);
            var x2 = Vector256.Load(px + 16);
            var x3 = Vector256.Load(px + 24);
            var b = Vector256.Create(w0[i]);
            c00 = Vector256.FusedMultiplyAdd(b, x0, c00);
            c01 = Vector256.FusedMultiplyAdd(b, x1, c01);
            c02 = Vector256.FusedMultiplyAdd(b, x2, c02);
            c03 = Vector256.FusedMultiplyAdd(b, x3, c03);
            b = Vector256.Create(w1[i]);
            c10 = Vector256.FusedMultiplyAdd(b, x0, c10);
            c11 = Vector256.FusedMultiplyAdd(b, x1, c11);
            c12 = Vector256.FusedMultiplyAdd(b, x2, c12);
            c13 = Vector256.FusedMultiplyAdd(b, x3, c13);
        }

        c00.Store(tile);
        c01.Store(tile + 8);
        c02.Store(tile + 16);
        c03.Store(tile + 24);
        c10.Store(tile + 32);
        c11.Store(tile + 40);
        c12.Store(tile + 48);
        c13.Store(tile + 56);
    }

    /// <summary>One weight row × 32 packed tokens, into <c>tile[32]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Micro1x32(float* panel, float* wrow, int kl, float* tile)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var i = 0; i < kl; i++)
            {
                var b = Vector256.Create(wrow[i]);
                var px = panel + (i * TokenTile);
                c0 = Vector256.FusedMultiplyAdd(b, Vector256.Load(px), c0);
                c1 = Vector256.FusedMultiplyAdd(b, Vector256.Load(px + 8), c1);
                c2 = Vector256.FusedMultiplyAdd(b, Vector256.Load(px + 16), c2);
                c3 = Vector256.FusedMultiplyAdd(b, Vector256.Load(px + 24), c3);
            }

            c0.Store(tile);
            c1.Store(tile + 8);
            c2.Store(tile + 16);
            c3.Store(tile + 24);
        }
        else
        {
            for (var t = 0; t < TokenTile; t++)
            {
                var s = 0f;
                for (var i = 0; i < kl; i++)
                {
                    s = MathF.FusedMultiplyAdd(wrow[i], panel[(i * TokenTile) + t], s);
                }

                tile[t] = s;
            }
        }
    }
}
