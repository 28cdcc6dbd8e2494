namespace Petals.Tensors;

/// <summary>Sizes of <see cref="TensorDType"/> values.</summary>
public static class TensorDTypeExtensions
{
    /// <summary>The number of bytes that <paramref name="elementCount"/> elements of <paramref name="dtype"/> occupy.</summary>
    /// <param name="dtype">The element type.</param>
    /// <param name="elementCount">The number of elements; for block formats it must be a multiple of the block size.</param>
    /// <returns>The size in bytes.</returns>
    /// <exception cref="ArgumentException">When <paramref name="elementCount"/> is negative or not a multiple of the block size.</exception>
    public static long ByteSize(this TensorDType dtype, long elementCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementCount);
        switch (dtype)
        {
            case TensorDType.F32:
            case TensorDType.I32:
                return checked(elementCount * 4);
            case TensorDType.F16:
            case TensorDType.BF16:
                return checked(elementCount * 2);
            case TensorDType.I8:
                return elementCount;
            case TensorDType.I64:
                return checked(elementCount * 8);
            case TensorDType.Q8_0:
                if (elementCount % 32 != 0)
                {
                    throw new ArgumentException($"Q8_0 tensors hold a multiple of 32 elements, not {elementCount}.", nameof(elementCount));
                }

                return checked(elementCount / 32 * 34);
            default:
                throw new ArgumentException($"Unknown dtype {dtype}.", nameof(dtype));
        }
    }
}
