namespace Petals.Tensors;

/// <summary>A tensor's name, element type and shape (row-major, outermost dimension first).</summary>
/// <param name="Name">The tensor name.</param>
/// <param name="DType">The element type.</param>
/// <param name="Shape">The dimensions, outermost first (e.g. <c>[out_features, in_features]</c> for a linear weight).</param>
public sealed record TensorDescriptor(string Name, TensorDType DType, IReadOnlyList<long> Shape)
{
    /// <summary>The number of elements (product of the shape; 1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape)
            {
                n = checked(n * d);
            }

            return n;
        }
    }

    /// <summary>The size in bytes of the tensor's data.</summary>
    public long ByteSize => DType.ByteSize(ElementCount);

    /// <inheritdoc />
    public override string ToString() => $"{Name} {DType}[{string.Join(", ", Shape)}]";
}
