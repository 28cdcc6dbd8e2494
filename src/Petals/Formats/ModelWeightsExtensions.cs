using Petals.Models;
using Petals.Tensors;

namespace Petals.Formats;

/// <summary>Figures of a model's weights that servers announce and report: bytes per span, and the span's dtype.</summary>
public static class ModelWeightsExtensions
{
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
