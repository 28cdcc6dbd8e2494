namespace Petals.Formats.Gguf;

/// <summary>One tensor of a GGUF file.</summary>
/// <param name="Name">The tensor name as stored (e.g. <c>blk.0.attn_q.weight</c>).</param>
/// <param name="Type">The ggml element type.</param>
/// <param name="Shape">The dimensions in row-major order, outermost first (GGUF stores them innermost first; this is the reverse).</param>
/// <param name="DataOffset">The absolute offset of the tensor data in the file.</param>
/// <param name="ByteSize">The size of the tensor data in bytes.</param>
public sealed record GgufTensorInfo(string Name, GgufTensorType Type, IReadOnlyList<long> Shape, long DataOffset, long ByteSize)
{
    /// <summary>The number of elements (product of the shape).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape)
            {
                n *= d;
            }

            return n;
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} {Type}[{string.Join(", ", Shape)}]";
}
