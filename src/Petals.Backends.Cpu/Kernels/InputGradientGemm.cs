using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Petals.Backends.Cpu.Kernels;

/// <summary>
/// The compute-bound backward product of a frozen linear layer for many tokens, <c>dX[m, in] (+)= dY[m, out] W</c>: the
/// output gradients are packed once per product into 32-token panels (<see cref="PackedGemm.PackInput"/> over the
/// <c>out</c> dimension), each thread widens a block of weights (up to 512 rows × a chunk of input columns, dense or
/// block-quantized) to fp32 in its natural row-major layout, and a 4-token × 24-column (Vector256) or × 48-column
/// (Vector512) micro-kernel broadcasts four output gradients per weight row against three vectors of that row's
/// columns into twelve FMA accumulators. A weight element is widened once per panel sweep, not once per token, and no
/// transposition is needed: the columns of <c>W</c> are the vector lanes.
/// </summary>
internal static unsafe class InputGradientGemm
{
    /// <summary>Floats of the widened weight block.</summary>
    private const int BlockFloats = 48 * 1024;

    /// <summary>Tokens per micro-kernel tile.</summary>
    private const int TokenTile = 4;

    /// <summary>Floats of per-thread scratch that the product needs.</summary>
    public const int ScratchFloats = BlockFloats + (TokenTile * 48);

    /// <summary>The input columns of one chunk: a multiple of the storage's block (for widening) and of 48 (whole micro-kernel tiles).</summary>
    public static int ColumnChunk(int alignment)
    {
        int a = Math.Max(1, alignment), b = 48, x = a, y = b;
        while (y != 0)
        {
            (x, y) = (y, x % y);
        }

        return a / x * b;
    }

    /// <summary>Weight rows per widened block for a column chunk.</summary>
    /// <remarks>512 rows of 48 columns (96 KiB) measured a few percent faster than 256 or 128 on two AVX2 cores (fewer partial sums stored into dX).</remarks>
    private static int RowBlock(int chunk) => Math.Max(16, Math.Min(512, BlockFloats / chunk));

    /// <summary>
    /// Computes input columns <c>[colStart, colEnd)</c> of <c>dx[m, inF] (+)= dy W</c> from <paramref name="dyp"/>, the output
    /// gradients packed by <see cref="PackedGemm.PackInput"/> (<c>k = outF</c>). <paramref name="colStart"/> must be a multiple
    /// of <see cref="ColumnChunk"/> of the storage's alignment.
    /// </summary>
    public static void Compute<TRows>(float* dyp, int m, int outF, int inF, byte* w, float* dx, int colStart, int colEnd, bool accumulate, float* scratch)
        where TRows : struct, IWeightRows =>
        Compute<TRows>(dyp, m, outF, inF, w, dx, colStart, colEnd, accumulate, scratch, BestTileWidth);

    /// <summary>The micro-kernel tile width of this machine: 48 columns with Vector512, 24 with Vector256, else 0 (plain loops).</summary>
    public static int BestTileWidth => Vector512.IsHardwareAccelerated ? 48 : Vector256.IsHardwareAccelerated ? 24 : 0;

    /// <summary><see cref="Compute{TRows}(float*, int, int, int, byte*, float*, int, int, bool, float*)"/> with a given tile width (48, 24 or 0; tests run every one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Compute<TRows>(float* dyp, int m, int outF, int inF, byte* w, float* dx, int colStart, int colEnd, bool accumulate, float* scratch, int wide)
        where TRows : struct, IWeightRows
    {
        var chunk = ColumnChunk(TRows.Alignment);
        var kb = RowBlock(chunk);
        var wbuf = scratch;
        var tile = scratch + BlockFloats;
        var rowBytes = TRows.RowBytes(inF);
        var panels = PackedGemm.Panels(m);
        var path = Quant.KernelPaths.Best;
        const int tt = PackedGemm.TokenTile;
        for (var k0 = 0; k0 < outF; k0 += kb)
        {
            var kl = Math.Min(kb, outF - k0);
            var acc = accumulate || k0 > 0;
            for (var c0 = colStart; c0 < colEnd; c0 += chunk)
            {
                var cw = Math.Min(chunk, colEnd - c0);
                for (var r = 0; r < kl; r++)
                {
                    TRows.Widen(w + ((k0 + r) * rowBytes), c0, cw, wbuf + ((long)r * cw), path);
                }

                var c = 0;
                if (wide > 0)
                {
                    for (; c + wide <= cw; c += wide)
                    {
                        for (var p = 0; p < panels; p++)
                        {
                            var panel = dyp + ((((long)p * outF) + k0) * tt);
                            for (var t0 = 0; t0 < tt && (p * tt) + t0 < m; t0 += TokenTile)
                            {
                                var tokens = Math.Min(TokenTile, m - (p * tt) - t0);
                                var d = dx + ((long)((p * tt) + t0) * inF) + c0 + c;
                                if (wide == 48)
                                {
                                    Micro4x48(panel + t0, wbuf + c, cw, kl, tile);
                                }
                                else
                                {
                                    Micro4x24(panel + t0, wbuf + c, cw, kl, tile);
                                }

                                Store(tile, wide, d, inF, tokens, wide, acc);
                            }
                        }
                    }
                }

                if (wide > 0)
                {
                    // The row's last, partial chunk: 8 columns at a time, then plain loops.
                    for (; c + 8 <= cw; c += 8)
                    {
                        for (var p = 0; p < panels; p++)
                        {
                            var panel = dyp + ((((long)p * outF) + k0) * tt);
                            for (var t0 = 0; t0 < tt && (p * tt) + t0 < m; t0 += TokenTile)
                            {
                                var tokens = Math.Min(TokenTile, m - (p * tt) - t0);
                                Micro4x8(panel + t0, wbuf + c, cw, kl, tile);
                                Store(tile, 8, dx + ((long)((p * tt) + t0) * inF) + c0 + c, inF, tokens, 8, acc);
                            }
                        }
                    }
                }

                if (c < cw)
                {
                    for (var p = 0; p < panels; p++)
                    {
                        var panel = dyp + ((((long)p * outF) + k0) * tt);
                        var tokens = Math.Min(tt, m - (p * tt));
                        for (var t = 0; t < tokens; t++)
                        {
                            var d = dx + ((long)((p * tt) + t) * inF) + c0;
                            for (var j = c; j < cw; j++)
                            {
                                var s = 0f;
                                for (var r = 0; r < kl; r++)
                                {
                                    s = MathF.FusedMultiplyAdd(panel[(r * tt) + t], wbuf[((long)r * cw) + j], s);
                                }

                                d[j] = acc ? d[j] + s : s;
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>Adds (or writes) the first <paramref name="tokens"/> rows of <c>tile[4][width]</c> into <paramref name="dx"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* tile, int width, float* dx, int ldx, int tokens, int columns, bool accumulate)
    {
        for (var t = 0; t < tokens; t++)
        {
            var src = tile + (t * width);
            var dst = dx + ((long)t * ldx);
            var j = 0;
            for (; j + 8 <= columns; j += 8)
            {
                var v = Vector256.Load(src + j);
                (accumulate ? Vector256.Load(dst + j) + v : v).Store(dst + j);
            }

            for (; j < columns; j++)
            {
                dst[j] = accumulate ? dst[j] + src[j] : src[j];
            }
        }
    }

    /// <summary>Four packed tokens (stride 32) × 24 weight columns (row stride <paramref name="ldw"/>) over <paramref name="kl"/> rows, into <c>tile[4][24]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Micro4x24(float* panel, float* w, int ldw, int kl, float* tile)
    {
        Vector256<float> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
        Vector256<float> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
        for (var r = 0; r < kl; r++)
        {
            var pw = w + ((long)r * ldw);
            var w0 = Vector256.Load(pw);
            var w1 = Vector256.Load(pw + 8);
            var w2 = Vector256.Load(pw + 16);
            var pp = panel + (r * PackedGemm.TokenTile);
            var b = Vector256.Create(pp[0]);
            c00 = Vector256.FusedMultiplyAdd(b, w0, c00);
            c01 = Vector256.FusedMultiplyAdd(b, w1, c01);
            c02 = Vector256.FusedMultiplyAdd(b, w2, c02);
            b = Vector256.Create(pp[1]);
            c10 = Vector256.FusedMultiplyAdd(b, w0, c10);
            c11 = Vector256.FusedMultiplyAdd(b, w1, c11);
            c12 = Vector256.FusedMultiplyAdd(b, w2, c12);
            b = Vector256.Create(pp[2]);
            c20 = Vector256.FusedMultiplyAdd(b, w0, c20);
            c21 = Vector256.FusedMultiplyAdd(b, w1, c21);
            c22 = Vector256.FusedMultiplyAdd(b, w2, c22);
            b = Vector256.Create(pp[3]);
            c30 = Vector256.FusedMultiplyAdd(b, w0, c30);
            c31 = Vector256.FusedMultiplyAdd(b, w1, c31);
            c32 = Vector256.FusedMultiplyAdd(b, w2, c32);
        }

        c00.Store(tile);
        c01.Store(tile + 8);
        c02.Store(tile + 16);
        c10.Store(tile + 24);
        c11.Store(tile + 32);
        c12.Store(tile + 40);
        c20.Store(tile + 48);
        c21.Store(tile + 56);
        c22.Store(tile + 64);
        c30.Store(tile + 72);
        c31.Store(tile + 80);
        c32.Store(tile + 88);
    }

    /// <summary>Four packed tokens (stride 32) × 8 weight columns (row stride <paramref name="ldw"/>) over <paramref name="kl"/> rows, into <c>tile[4][8]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Micro4x8(float* panel, float* w, int ldw, int kl, float* tile)
    {
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (var r = 0; r < kl; r++)
        {
            var w0 = Vector256.Load(w + ((long)r * ldw));
            var pp = panel + (r * PackedGemm.TokenTile);
            c0 = Vector256.FusedMultiplyAdd(Vector256.Create(pp[0]), w0, c0);
            c1 = Vector256.FusedMultiplyAdd(Vector256.Create(pp[1]), w0, c1);
            c2 = Vector256.FusedMultiplyAdd(Vector256.Create(pp[2]), w0, c2);
            c3 = Vector256.FusedMultiplyAdd(Vector256.Create(pp[3]), w0, c3);
        }

        c0.Store(tile);
        c1.Store(tile + 8);
        c2.Store(tile + 16);
        c3.Store(tile + 24);
    }

    /// <summary>Four packed tokens (stride 32) × 48 weight columns (row stride <paramref name="ldw"/>) over <paramref name="kl"/> rows, into <c>tile[4][48]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Micro4x48(float* panel, float* w, int ldw, int kl, float* tile)
    {
        Vector512<float> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
        for (var r = 0; r < kl; r++)
        {
            var pw = w + ((long)r * ldw);
            var w0 = Vector512.Load(pw);
            var w1 = Vector512.Load(pw + 16);
            var w2 = Vector512.Load(pw + 32);
            var pp = panel + (r * PackedGemm.TokenTile);
            var b = Vector512.Create(pp[0]);
            c00 = Vector512.FusedMultiplyAdd(b, w0, c00);
            c01 = Vector512.FusedMultiplyAdd(b, w1, c01);
            c02 = Vector512.FusedMultiplyAdd(b, w2, c02);
            b = Vector512.Create(pp[1]);
            c10 = Vector512.FusedMultiplyAdd(b, w0, c10);
            c11 = Vector512.FusedMultiplyAdd(b, w1, c11);
            c12 = Vector512.FusedMultiplyAdd(b, w2, c12);
            b = Vector512.Create(pp[2]);
            c20 = Vector512.FusedMultiplyAdd(b, w0, c20);
            c21 = Vector512.FusedMultiplyAdd(b, w1, c21);
            c22 = Vector512.FusedMultiplyAdd(b, w2, c22);
            b = Vector512.Create(pp[3]);
            c30 = Vector512.FusedMultiplyAdd(b, w0, c30);
            c31 = Vector512.FusedMultiplyAdd(b, w1, c31);
            c32 = Vector512.FusedMultiplyAdd(b, w2, c32);
        }

        c00.Store(tile);
        c01.Store(tile + 16);
        c02.Store(tile + 32);
        c10.Store(tile + 48);
        c11.Store(tile + 64);
        c12.Store(tile + 80);
        c20.Store(tile + 96);
        c21.Store(tile + 112);
        c22.Store(tile + 128);
        c30.Store(tile + 144);
        c31.Store(tile + 160);
        c32.Store(tile + 176);
    }
}
