using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Petals.Formats;

/// <summary>Element conversions and row permutations used by the weight readers and writers.</summary>
internal static class TensorConversions
{
    /// <summary>Elements per Q8_0 block.</summary>
    public const int Q8BlockElements = 32;

    /// <summary>Bytes per Q8_0 block: an fp16 scale and 32 int8 values.</summary>
    public const int Q8BlockBytes = 34;

    /// <summary>Converts little-endian binary16 values to binary32.</summary>
    public static void HalfToSingle(ReadOnlySpan<byte> source, Span<float> destination) =>
        TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);

    /// <summary>Converts little-endian bfloat16 values to binary32 (exact: bfloat16 is the top half of binary32).</summary>
    public static void BFloat16ToSingle(ReadOnlySpan<byte> source, Span<float> destination) =>
        Numerics.DenseMatrix.BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(source)[..destination.Length], destination);

    /// <summary>Dequantizes Q8_0 blocks: value = fp16 scale * int8.</summary>
    public static void DequantizeQ8_0(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var blocks = destination.Length / Q8BlockElements;
        for (var b = 0; b < blocks; b++)
        {
            var block = source.Slice(b * Q8BlockBytes, Q8BlockBytes);
            var scale = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(block));
            var qs = MemoryMarshal.Cast<byte, sbyte>(block[2..]);
            var output = destination.Slice(b * Q8BlockElements, Q8BlockElements);
            for (var i = 0; i < Q8BlockElements; i++)
            {
                output[i] = scale * qs[i];
            }
        }
    }

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
