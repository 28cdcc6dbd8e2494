using Petals.Models;

namespace Petals.Inference;

/// <summary>
/// All decoder blocks of a model, wherever they run: in this process (<see cref="LocalTransformerBlocks"/>)
/// or, later, on a chain of remote servers. Generation code talks only to this contract.
/// </summary>
/// <remarks>Thread-safe: several sessions may be open at once.</remarks>
public interface ITransformerBlocks
{
    /// <summary>The model configuration.</summary>
    ModelConfig Config { get; }

    /// <summary>Opens an inference session that keeps attention caches for <paramref name="batchSize"/> sequences.</summary>
    /// <param name="batchSize">Number of sequences, at least 1.</param>
    /// <param name="maxLength">The most positions the session will hold, at least 1.</param>
    /// <param name="cancellationToken">Cancels opening.</param>
    /// <returns>The session; dispose it to free the caches.</returns>
    ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken = default);
}
