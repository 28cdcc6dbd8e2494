using Petals.Models;

namespace Petals.Execution;

/// <summary>Creates executors for spans of a model; one per backend (CPU, Torch, …).</summary>
public interface IBlockExecutorFactory
{
    /// <summary>A short name of the backend, e.g. <c>"cpu"</c>.</summary>
    string Name { get; }

    /// <summary>Creates an executor for <paramref name="blocks"/>, loading only that span's tensors from <paramref name="weights"/>.</summary>
    /// <param name="weights">The model weights; must outlive the executor unless the executor copies what it needs.</param>
    /// <param name="blocks">The span of blocks to run.</param>
    /// <returns>The executor.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="blocks"/> goes past the model's last block.</exception>
    /// <exception cref="InvalidDataException">When a tensor is missing or has the wrong shape; the message names the tensor.</exception>
    IBlockExecutor Create(IModelWeights weights, BlockRange blocks);
}
