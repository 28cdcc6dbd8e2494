namespace Petals.Tensors;

/// <summary>Sizes of <see cref="TensorDType"/> values.</summary>
public static class TensorDTypeExtensions
{
    /// <summary>Elements per block of <paramref name="dtype"/>: 1 for element types, 32, 64 or 256 for block-quantized types.</summary>
    /// <param name="dtype">The element type.</param>
    /// <returns>The block size in elements.</returns>
    /// <exception cref="ArgumentException">When <paramref name="dtype"/> is not defined.</exception>
    public static int BlockElements(this TensorDType dtype) => Block(dtype).Elements;

    /// <summary>Bytes per block of <paramref name="dtype"/> (the element size for element types).</summary>
    /// <param name="dtype">The element type.</param>
    /// <returns>The block size in bytes.</returns>
    /// <exception cref="ArgumentException">When <paramref name="dtype"/> is not defined.</exception>
    public static int BlockBytes(this TensorDType dtype) => Block(dtype).Bytes;

    /// <summary>Whether <paramref name="dtype"/> stores blocks of quantized values with scales (Q8_0, Q4_0, …, the k-quants, NF4).</summary>
    /// <param name="dtype">The element type.</param>
    /// <returns><see langword="true"/> for block-quantized types.</returns>
    public static bool IsBlockQuantized(this TensorDType dtype) => Enum.IsDefined(dtype) && Block(dtype).Elements > 1;

    /// <summary>The number of bytes that <paramref name="elementCount"/> elements of <paramref name="dtype"/> occupy.</summary>
    /// <param name="dtype">The element type.</param>
    /// <param name="elementCount">The number of elements; for block formats it must be a multiple of the block size.</param>
    /// <returns>The size in bytes.</returns>
    /// <exception cref="ArgumentException">When <paramref name="elementCount"/> is negative or not a multiple of the block size.</exception>
    public static long ByteSize(this TensorDType dtype, long elementCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementCount);
        var (elements, bytes) = Block(dtype);
        if (elementCount % elements != 0)
        {
            throw new ArgumentException($"{dtype} tensors hold a multiple of {elements} elements, not {elementCount}.", nameof(elementCount));
        }

        return checked(elementCount / elements * bytes);
    }

    private static (int Elements, int Bytes) Block(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 or TensorDType.I32 => (1, 4),
        TensorDType.F16 or TensorDType.BF16 => (1, 2),
        TensorDType.I8 => (1, 1),
        TensorDType.I64 => (1, 8),
        TensorDType.Q8_0 => (32, 34),
        TensorDType.Q4_0 => (32, 18),
        TensorDType.Q4_1 => (32, 20),
        TensorDType.Q5_0 => (32, 22),
        TensorDType.Q5_1 => (32, 24),
        TensorDType.Q2_K => (256, 84),
        TensorDType.Q3_K => (256, 110),
        TensorDType.Q4_K => (256, 144),
        TensorDType.Q5_K => (256, 176),
        TensorDType.Q6_K => (256, 210),
        TensorDType.NF4 => (64, 34),
        _ => throw new ArgumentException($"Unknown dtype {dtype}.", nameof(dtype)),
    };
}
