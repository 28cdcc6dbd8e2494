using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Petals.Backends.Cpu.Kernels.Quant;

namespace Petals.Backends.Cpu.Kernels;

/// <summary>
/// How rows of a weight matrix are stored: the one place a product kernel learns the storage. Widening a row segment
/// to fp32 is what the packed GEMM (prefill), the chunked GEMV of quantized weights and a backward pass
/// (<c>dX = dY W</c>) need.
/// </summary>
internal unsafe interface IWeightRows
{
    /// <summary>Bytes of one row of <paramref name="k"/> elements.</summary>
    static abstract nint RowBytes(int k);

    /// <summary>Columns a widened segment must start on: the block size of a block format, else 1.</summary>
    static abstract int Alignment { get; }

    /// <summary>Widens elements <c>[k0, k0 + count)</c> of the row at <paramref name="row"/> to fp32 (block formats: <paramref name="k0"/> a multiple of the block size, and <paramref name="count"/> too unless it reaches the row's end).</summary>
    static abstract void Widen(byte* row, int k0, int count, float* dst, KernelPath path);

    /// <summary>Whether <see cref="FusedDot"/> exists for this storage.</summary>
    static virtual bool HasFusedDot => false;

    /// <summary>The integer dot product of a row of <paramref name="k"/> weights with quantized inputs (<see cref="FusedDots"/>).</summary>
    static virtual float FusedDot(byte* row, int k, in Q8Activations x) => throw new NotSupportedException();
}

/// <summary>Rows of an element type (F32, BF16, F16).</summary>
internal readonly unsafe struct DenseRows<TF> : IWeightRows
    where TF : struct, IWeightFormat
{
    public static nint RowBytes(int k) => (nint)k * TF.ElementSize;

    public static int Alignment => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widen(byte* row, int k0, int count, float* dst, KernelPath path)
    {
        var es = TF.ElementSize;
        var src = row + ((nint)k0 * es);
        var i = 0;
        if (path == KernelPath.Vector512)
        {
            for (; i + 16 <= count; i += 16)
            {
                TF.Load16(src + (i * es)).Store(dst + i);
            }
        }
        else if (path == KernelPath.Vector256)
        {
            for (; i + 8 <= count; i += 8)
            {
                TF.Load8(src + (i * es)).Store(dst + i);
            }
        }

        for (; i < count; i++)
        {
            dst[i] = TF.Load1(src + (i * es));
        }
    }
}

/// <summary>Rows of whole blocks of a block-quantized format.</summary>
internal readonly unsafe struct QuantRows<TQ> : IWeightRows
    where TQ : struct, IQuantFormat
{
    public static nint RowBytes(int k) => QuantKernels.RowBytes<TQ>(k);

    public static int Alignment => TQ.BlockElements;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widen(byte* row, int k0, int count, float* dst, KernelPath path) => QuantKernels.Dequantize<TQ>(row, k0, count, dst, path);

    public static bool HasFusedDot => TQ.HasFusedDot;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => TQ.FusedDot(row, k, x);
}

/// <summary>
/// Per-output-channel int8 rows: each row is its fp32 absmax scale (<c>max |w| / 127</c>) followed by its <c>k</c> signed codes.
/// </summary>
internal readonly unsafe struct Int8Rows : IWeightRows
{
    public static nint RowBytes(int k) => (nint)k + sizeof(float);

    public static int Alignment => 1;

    public static bool HasFusedDot => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FusedDot(byte* row, int k, in Q8Activations x) => FusedDots.Int8Row(row, k, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widen(byte* row, int k0, int count, float* dst, KernelPath path)
    {
        var scale = Unsafe.ReadUnaligned<float>(row);
        var q = (sbyte*)(row + sizeof(float) + k0);
        var i = 0;
        if (path != KernelPath.Scalar)
        {
            for (; i + 16 <= count; i += 16)
            {
                Quant.Widen.S8x16(Vector128.Load(q + i), scale, dst + i, path);
            }
        }

        for (; i < count; i++)
        {
            dst[i] = q[i] * scale;
        }
    }
}
