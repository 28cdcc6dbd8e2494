using System.Runtime.InteropServices;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Formats;

/// <summary>
/// Figures of a model's weights that servers announce and report (bytes per span, the span's dtype), and the one way to
/// read a tensor as floats whatever its storage.
/// </summary>
public static class ModelWeightsExtensions
{
    /// <summary>
    /// Returns the tensor <paramref name="name"/> in a float dtype: F32, F16 and BF16 tensors as served (views, no copy),
    /// block-quantized tensors (Q8_0, Q4_0, …, the k-quants, NF4) dequantized into a new F32 tensor with
    /// <see cref="BlockQuantization.Dequantize"/>. Every consumer that needs floats (the client's embeddings, norm and LM
    /// head, format conversion) reads through this method; block executors take the stored form from
    /// <see cref="IModelWeights.GetTensor"/>.
    /// </summary>
    /// <param name="weights">The model's weights.</param>
    /// <param name="name">A canonical tensor name.</param>
    /// <returns>The tensor as F32, F16 or BF16; a dequantized copy is not cached (callers keep it).</returns>
    /// <exception cref="KeyNotFoundException">When the model has no such tensor.</exception>
    /// <exception cref="ModelFormatException">When the tensor's dtype has no float decoding (I8, I32, I64).</exception>
    public static WeightTensor GetFloatTensor(this IModelWeights weights, string name)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return ToFloatTensor(weights.GetTensor(name), weights.Source);
    }

    /// <summary>The body of <see cref="GetFloatTensor"/> for a tensor already read (the converter reads without caching).</summary>
    internal static WeightTensor ToFloatTensor(WeightTensor tensor, string source)
    {
        var name = tensor.Descriptor.Name;
        var dtype = tensor.Descriptor.DType;
        if (dtype is TensorDType.F32 or TensorDType.F16 or TensorDType.BF16)
        {
            return tensor;
        }

        if (!dtype.IsBlockQuantized())
        {
            throw new ModelFormatException(source, name, $"tensor of dtype {dtype} cannot be read as floats.");
        }

        var elements = checked((int)tensor.Descriptor.ElementCount);
        var bytes = new byte[checked(elements * sizeof(float))];
        var rows = tensor.Descriptor.Shape.Count > 1 ? checked((int)(elements / tensor.Descriptor.Shape[^1])) : 1;
        var columns = elements / rows;
        var rowBytes = checked((int)dtype.ByteSize(columns));

        // Rows are whole blocks: dequantize them in parallel (an LM head of a 7B model is 131M values).
        Parallel.For(0, rows, r => BlockQuantization.Dequantize(
            dtype,
            tensor.Data.Span.Slice(r * rowBytes, rowBytes),
            MemoryMarshal.Cast<byte, float>(bytes.AsSpan(r * columns * sizeof(float), columns * sizeof(float)))));
        return new WeightTensor(tensor.Descriptor with { DType = TensorDType.F32 }, bytes);
    }

    /// <summary>The bytes of the tensors of the blocks in <paramref name="span"/> (what a server of that span reads).</summary>
    /// <param name="weights">The model's weights.</param>
    /// <param name="span">The blocks.</param>
    /// <returns>The bytes, as stored.</returns>
    public static long SpanBytes(this IModelWeights weights, BlockRange span)
    {
        ArgumentNullException.ThrowIfNull(weights);
        long total = 0;
        for (var b = span.Start; b < span.End; b++)
        {
            var prefix = LlamaTensorNames.Block(b, string.Empty);
            total += weights.Tensors.Where(t => t.Key.StartsWith(prefix, StringComparison.Ordinal)).Sum(t => t.Value.ByteSize);
        }

        return total;
    }

    /// <summary>The bytes of every tensor of the model.</summary>
    /// <param name="weights">The model's weights.</param>
    /// <returns>The bytes, as stored.</returns>
    public static long TotalBytes(this IModelWeights weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return weights.Tensors.Values.Sum(t => t.ByteSize);
    }

    /// <summary>The dtype of a span's weights: that of the largest tensor of its first block (a projection, not a norm); F32 when there is none.</summary>
    /// <param name="weights">The model's weights.</param>
    /// <param name="span">The blocks.</param>
    /// <returns>The dtype.</returns>
    public static TensorDType SpanDType(this IModelWeights weights, BlockRange span)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var prefix = LlamaTensorNames.Block(span.Start, string.Empty);
        return weights.Tensors.Where(t => t.Key.StartsWith(prefix, StringComparison.Ordinal)).MaxBy(t => t.Value.ByteSize).Value?.DType ?? TensorDType.F32;
    }
}
