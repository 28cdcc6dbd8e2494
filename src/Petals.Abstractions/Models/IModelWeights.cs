using Petals.Tensors;

namespace Petals.Models;

/// <summary>
/// Lazily loaded weights of a model, under the canonical names of <see cref="LlamaTensorNames"/>.
/// A server asks only for the tensors of its block span, a client only for embeddings, norm and head:
/// implementations map files into memory and materialize a tensor only when it is requested.
/// </summary>
/// <remarks>
/// Implementations are thread-safe for concurrent <see cref="GetTensor"/> calls. Tensor memory
/// returned by <see cref="GetTensor"/> stays valid until the object is disposed.
/// </remarks>
public interface IModelWeights : IDisposable
{
    /// <summary>The model configuration.</summary>
    ModelConfig Config { get; }

    /// <summary>A description of where the weights come from (a file or directory path), used in messages.</summary>
    string Source { get; }

    /// <summary>The descriptors of all tensors available, by canonical name.</summary>
    IReadOnlyDictionary<string, TensorDescriptor> Tensors { get; }

    /// <summary>Returns the tensor named <paramref name="name"/>, reading or mapping its data.</summary>
    /// <param name="name">A canonical tensor name.</param>
    /// <returns>
    /// The tensor in the dtype it has in the source: block-quantized formats (Q8_0, Q4_K, …) are served as they are
    /// stored, never dequantized, so that executors can keep them quantized in memory. Callers that need floats
    /// dequantize with <see cref="BlockQuantization.Dequantize"/> (the core library's <c>GetFloatTensor</c> extension does).
    /// </returns>
    /// <exception cref="KeyNotFoundException">When the model has no such tensor; the message names the tensor and the source.</exception>
    WeightTensor GetTensor(string name);
}
