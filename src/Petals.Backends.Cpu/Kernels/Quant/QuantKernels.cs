using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Petals.Backends.Cpu.Kernels.Quant;

/// <summary>
/// Fused dequantize-and-multiply for block-quantized weights: each weight row is decoded a chunk at a time into a
/// stack buffer that stays in L1 and multiplied there with every token's inputs, so the weights are read from memory
/// once per product in their packed form and never expanded beyond one chunk.
/// </summary>
internal static unsafe class QuantKernels
{
    /// <summary>Floats decoded at a time (a multiple of every block size; 4 KiB, well within L1).</summary>
    public const int Chunk = 1024;

    /// <summary>Bytes of one weight row of <paramref name="k"/> elements.</summary>
    public static nint RowBytes<TQ>(int k)
        where TQ : struct, IQuantFormat => (nint)(k / TQ.BlockElements) * TQ.BlockBytes;

    /// <summary>Decodes <paramref name="count"/> weights of a row starting at element <paramref name="k0"/> (both multiples of the block size).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dequantize<TQ>(byte* row, int k0, int count, float* dst, KernelPath path)
        where TQ : struct, IQuantFormat
    {
        var be = TQ.BlockElements;
        var src = row + ((nint)(k0 / be) * TQ.BlockBytes);
        var blocks = count / be;
        for (var b = 0; b < blocks; b++)
        {
            TQ.Dequantize(src + ((nint)b * TQ.BlockBytes), dst + ((nint)b * be), path);
        }
    }

    /// <summary>
    /// Computes <c>y[t, r] (+)= sum_i x[t, i] * W[r, i]</c> for rows <c>[rowStart, rowEnd)</c> and tokens <c>t &lt; m</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemv<TRows>(byte* w, int k, float* x, int m, float* y, int ldy, int rowStart, int rowEnd, bool accumulate, KernelPath path)
        where TRows : struct, IWeightRows
    {
        if (path != KernelPath.Scalar && TRows.HasFusedDot && FusedDots.IsSupported && k % 32 == 0)
        {
            FusedGemv<TRows>(w, k, x, m, y, ldy, rowStart, rowEnd, accumulate);
            return;
        }

        var rowBytes = TRows.RowBytes(k);
        var buf = stackalloc float[Chunk];
        for (var r = rowStart; r < rowEnd; r++)
        {
            var row = w + (r * rowBytes);
            for (var c0 = 0; c0 < k; c0 += Chunk)
            {
                var n = Math.Min(Chunk, k - c0);
                TRows.Widen(row, c0, n, buf, path);
                var add = accumulate || c0 > 0;
                for (var t = 0; t < m; t++)
                {
                    var d = Dot(buf, x + ((nint)t * k) + c0, n, path);
                    ref var dst = ref y[((nint)t * ldy) + r];
                    dst = add ? dst + d : d;
                }
            }
        }
    }

    /// <summary>
    /// The input gradient of a linear layer for columns <c>[colStart, colEnd)</c>: <c>dx[t, c] (+)= sum_r dy[t, r] W[r, c]</c>
    /// (<c>dX = dY W</c>, the frozen-weight backward pass). Each weight row is widened a chunk at a time, exactly as the
    /// forward kernels read it, and added into every token's gradient, so the weights are read once per call in their stored
    /// form. Threads split the columns (each owns its slice of <paramref name="dx"/>); for block formats
    /// <paramref name="colStart"/> and <paramref name="colEnd"/> are multiples of the block size (or the row's end).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void InputGradient<TRows>(byte* w, int outFeatures, int k, float* dy, int m, float* dx, int colStart, int colEnd, bool accumulate, KernelPath path)
        where TRows : struct, IWeightRows
    {
        var rowBytes = TRows.RowBytes(k);
        var buf = stackalloc float[Chunk];
        if (!accumulate)
        {
            for (var t = 0; t < m; t++)
            {
                new Span<float>(dx + ((nint)t * k) + colStart, colEnd - colStart).Clear();
            }
        }

        for (var c0 = colStart; c0 < colEnd; c0 += Chunk)
        {
            var n = Math.Min(Chunk, colEnd - c0);
            for (var r = 0; r < outFeatures; r++)
            {
                TRows.Widen(w + (r * rowBytes), c0, n, buf, path);
                for (var t = 0; t < m; t++)
                {
                    Axpy(dy[((nint)t * outFeatures) + r], buf, dx + ((nint)t * k) + c0, n, path);
                }
            }
        }
    }

    /// <summary><c>y[i] += a * x[i]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy(float a, float* x, float* y, int n, KernelPath path)
    {
        var i = 0;
        if (path == KernelPath.Vector512)
        {
            var va = Vector512.Create(a);
            for (; i + 16 <= n; i += 16)
            {
                Vector512.FusedMultiplyAdd(va, Vector512.Load(x + i), Vector512.Load(y + i)).Store(y + i);
            }
        }
        else if (path == KernelPath.Vector256)
        {
            var va = Vector256.Create(a);
            for (; i + 8 <= n; i += 8)
            {
                Vector256.FusedMultiplyAdd(va, Vector256.Load(x + i), Vector256.Load(y + i)).Store(y + i);
            }
        }

        for (; i < n; i++)
        {
            y[i] = MathF.FusedMultiplyAdd(a, x[i], y[i]);
        }
    }

    /// <summary>Up to this many bytes of quantized inputs live on the stack; more (many tokens) come from the shared array pool.</summary>
    private const int StackActivationBytes = 64 * 1024;

    /// <summary>The fused path: every token's inputs are quantized once (<see cref="Q8Activations"/>), then each row is dotted with each token while it is in L1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void FusedGemv<TRows>(byte* w, int k, float* x, int m, float* y, int ldy, int rowStart, int rowEnd, bool accumulate)
        where TRows : struct, IWeightRows
    {
        var perToken = Q8Activations.ScratchBytes(k);
        var total = perToken * m;
        byte[]? rented = null;
        var scratch = total <= StackActivationBytes ? stackalloc byte[total] : (rented = System.Buffers.ArrayPool<byte>.Shared.Rent(total));
        try
        {
            fixed (byte* ps = scratch)
            {
                if (m == 1)
                {
                    var a = Q8Activations.Quantize(x, k, ps);
                    var rowBytes1 = TRows.RowBytes(k);
                    for (var r = rowStart; r < rowEnd; r++)
                    {
                        var d = TRows.FusedDot(w + (r * rowBytes1), k, a);
                        y[r] = accumulate ? y[r] + d : d;
                    }

                    return;
                }

                for (var t = 0; t < m; t++)
                {
                    Q8Activations.Quantize(x + ((nint)t * k), k, ps + ((nint)t * perToken));
                }

                var rowBytes = TRows.RowBytes(k);
                for (var r = rowStart; r < rowEnd; r++)
                {
                    var row = w + (r * rowBytes);
                    for (var t = 0; t < m; t++)
                    {
                        var a = Q8Activations.At(ps + ((nint)t * perToken), k);
                        var d = TRows.FusedDot(row, k, a);
                        ref var dst = ref y[((nint)t * ldy) + r];
                        dst = accumulate ? dst + d : d;
                    }
                }
            }
        }
        finally
        {
            if (rented is not null)
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>The fp32 dot product of <paramref name="n"/> elements with the given path's vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Dot(float* a, float* b, int n, KernelPath path)
    {
        var i = 0;
        var sum = 0f;
        if (path == KernelPath.Vector512)
        {
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; i + 64 <= n; i += 64)
            {
                s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), s0);
                s1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16), s1);
                s2 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 32), Vector512.Load(b + i + 32), s2);
                s3 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 48), Vector512.Load(b + i + 48), s3);
            }

            for (; i + 16 <= n; i += 16)
            {
                s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), s0);
            }

            sum = Vector512.Sum((s0 + s1) + (s2 + s3));
        }
        else if (path == KernelPath.Vector256)
        {
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; i + 32 <= n; i += 32)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 16), Vector256.Load(b + i + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 24), Vector256.Load(b + i + 24), s3);
            }

            for (; i + 8 <= n; i += 8)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
            }

            sum = Vector256.Sum((s0 + s1) + (s2 + s3));
        }

        for (; i < n; i++)
        {
            sum = MathF.FusedMultiplyAdd(a[i], b[i], sum);
        }

        return sum;
    }
}
