namespace Petals.Inference;

/// <summary>
/// An inference session over all blocks of a model: each call runs new positions through every block,
/// attending to the positions the session has already processed.
/// </summary>
/// <remarks>Not thread-safe: one caller at a time.</remarks>
public interface ITransformerSession : IAsyncDisposable
{
    /// <summary>Number of sequences in the batch.</summary>
    int BatchSize { get; }

    /// <summary>The most positions the session can hold.</summary>
    int MaxLength { get; }

    /// <summary>Positions processed so far; the next call starts here.</summary>
    int Position { get; }

    /// <summary>Runs <paramref name="tokenCount"/> new positions of every sequence through all blocks, in place.</summary>
    /// <param name="hidden">Hidden states <c>[BatchSize, tokenCount, HiddenSize]</c>, overwritten with the last block's outputs.</param>
    /// <param name="tokenCount">New positions per sequence, at least 1.</param>
    /// <param name="cancellationToken">Cancels the step; the session is then unusable.</param>
    /// <returns>A task that completes when the outputs are in <paramref name="hidden"/>.</returns>
    /// <exception cref="ArgumentException">When the buffer does not hold exactly <c>BatchSize * tokenCount * HiddenSize</c> values.</exception>
    /// <exception cref="InvalidOperationException">When <see cref="Position"/> + <paramref name="tokenCount"/> exceeds <see cref="MaxLength"/>.</exception>
    ValueTask ForwardAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken = default);

    /// <summary>
    /// Rolls the session back so that it holds only its first <paramref name="length"/> positions: the next
    /// <see cref="ForwardAsync"/> starts at <paramref name="length"/> and overwrites what followed (Petals' inference
    /// sessions allow it: a step below the cache length truncates the cache first). Nothing is sent until that step.
    /// </summary>
    /// <param name="length">The positions to keep, from 0 to <see cref="Position"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="length"/> is negative or above <see cref="Position"/>.</exception>
    /// <exception cref="NotSupportedException">When the implementation cannot roll back (the default).</exception>
    void Truncate(int length) => throw new NotSupportedException($"{GetType().Name} cannot roll a session back.");
}
