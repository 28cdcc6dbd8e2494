using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Petals.Formats;

/// <summary>Element conversions and row permutations used by the weight readers and writers.</summary>
internal static class TensorConversions
{
    /// <summary>Converts little-endian binary16 values to binary32.</summary>
    public static void HalfToSingle(ReadOnlySpan<byte> source, Span<float> destination) =>
        TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);

    /// <summary>Converts little-endian bfloat16 values to binary32 (exact: bfloat16 is the top half of binary32).</summary>
    public static void BFloat16ToSingle(ReadOnlySpan<byte> source, Span<float> destination) =>
        Numerics.DenseMatrix.BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(source)[..destination.Length], destination);

    /// <summary>
    /// Reorders the rows of a Q or K projection from Meta's interleaved rotary layout (pairs (2j, 2j+1) of each head
    /// rotate together) into the Hugging Face rotate-half layout: HF row <c>h*D + j</c> = Meta row <c>h*D + 2j</c> and
    /// HF row <c>h*D + D/2 + j</c> = Meta row <c>h*D + 2j + 1</c> for <c>j &lt; D/2</c>.
    /// </summary>
    /// <param name="meta">The rows in Meta order, <paramref name="heads"/> * <paramref name="headDim"/> rows of <paramref name="rowBytes"/> bytes.</param>
    /// <param name="hf">The destination, same size.</param>
    /// <param name="heads">The number of heads.</param>
    /// <param name="headDim">The width of one head (even).</param>
    /// <param name="rowBytes">The bytes of one row.</param>
    public static void MetaToHuggingFaceRows(ReadOnlySpan<byte> meta, Span<byte> hf, int heads, int headDim, int rowBytes)
    {
        var half = headDim / 2;
        for (var h = 0; h < heads; h++)
        {
            for (var j = 0; j < half; j++)
            {
                var even = ((h * headDim) + (2 * j)) * rowBytes;
                meta.Slice(even, rowBytes).CopyTo(hf.Slice(((h * headDim) + j) * rowBytes, rowBytes));
                meta.Slice(even + rowBytes, rowBytes).CopyTo(hf.Slice(((h * headDim) + half + j) * rowBytes, rowBytes));
            }
        }
    }
}
