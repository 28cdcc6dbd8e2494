using System.Runtime.CompilerServices;

namespace Petals.Backends.Cpu.Kernels;

/// <summary>
/// The compute-bound backward product of a frozen linear layer for many tokens, <c>dX[m, in] (+)= dY[m, out] W</c>: the
/// output gradients are packed once per product into 32-token panels (<see cref="PackedGemm.PackInput"/> over the
/// <c>out</c> dimension), and each thread widens a block of weights (up to 48K values: rows × a chunk of input
/// columns, dense or block-quantized) to fp32 <em>transposed</em> (input column-major), so that the forward's
/// 6 × 32 outer-product micro-kernel runs on it unchanged: an input column of <c>W</c> plays the part of a weight row.
/// The widening and the transposition are paid once per weight element per panel group, not per token.
/// </summary>
internal static unsafe class InputGradientGemm
{
    /// <summary>Floats of the transposed weight block.</summary>
    private const int BlockFloats = 48 * 1024;

    /// <summary>Floats of per-thread scratch that <see cref="Compute{TRows}"/> needs.</summary>
    public const int ScratchFloats = BlockFloats + 768 + (PackedGemm.RowTile * PackedGemm.TokenTile);

    /// <summary>The input columns of one chunk: a multiple of the storage's block (for widening) and of 48 (eight micro-kernel tiles).</summary>
    public static int ColumnChunk(int alignment)
    {
        int a = Math.Max(1, alignment), b = 48, x = a, y = b;
        while (y != 0)
        {
            (x, y) = (y, x % y);
        }

        return a / x * b;
    }

    /// <summary>
    /// Computes input columns <c>[colStart, colEnd)</c> of <c>dx[m, inF] (+)= dy W</c> from <paramref name="dyp"/>, the output
    /// gradients packed by <see cref="PackedGemm.PackInput"/> (<c>k = outF</c>). <paramref name="colStart"/> must be a multiple
    /// of <see cref="ColumnChunk"/> of the storage's alignment, or <paramref name="colEnd"/> the row's end.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Compute<TRows>(float* dyp, int m, int outF, int inF, byte* w, float* dx, int colStart, int colEnd, bool accumulate, float* scratch)
        where TRows : struct, IWeightRows
    {
        var chunk = ColumnChunk(TRows.Alignment);
        var kb = Math.Max(16, BlockFloats / chunk);
        var wbuf = scratch;
        var tmp = scratch + BlockFloats;
        var tile = tmp + 768;
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

                // Widen W[k0..k0+kl, c0..c0+cw] and store it transposed: wbuf[column][row].
                for (var r = 0; r < kl; r++)
                {
                    TRows.Widen(w + ((k0 + r) * rowBytes), c0, cw, tmp, path);
                    var dst = wbuf + r;
                    for (var j = 0; j < cw; j++)
                    {
                        dst[(long)j * kb] = tmp[j];
                    }
                }

                for (var j0 = 0; j0 < cw; j0 += PackedGemm.RowTile)
                {
                    var cols = Math.Min(PackedGemm.RowTile, cw - j0);
                    for (var p = 0; p < panels; p++)
                    {
                        var panel = dyp + ((((long)p * outF) + k0) * tt);
                        if (cols == PackedGemm.RowTile)
                        {
                            PackedGemm.Micro6x32(panel, wbuf + ((long)j0 * kb), kb, kl, tile);
                        }
                        else
                        {
                            for (var j = 0; j < cols; j++)
                            {
                                PackedGemm.Micro1x32(panel, wbuf + ((long)(j0 + j) * kb), kl, tile + (j * tt));
                            }
                        }

                        var t0 = p * tt;
                        var tokens = Math.Min(tt, m - t0);
                        for (var j = 0; j < cols; j++)
                        {
                            var src = tile + (j * tt);
                            var d = dx + ((long)t0 * inF) + c0 + j0 + j;
                            if (acc)
                            {
                                for (var t = 0; t < tokens; t++)
                                {
                                    d[(long)t * inF] += src[t];
                                }
                            }
                            else
                            {
                                for (var t = 0; t < tokens; t++)
                                {
                                    d[(long)t * inF] = src[t];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
