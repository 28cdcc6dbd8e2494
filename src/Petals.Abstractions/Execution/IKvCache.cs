namespace Petals.Execution;

/// <summary>
/// The attention (key/value) cache of one inference session on one <see cref="IBlockExecutor"/>: for
/// every block of the executor's span (or of the sub-range it was created for), keys and values of the positions processed so far, for each row of the batch.
/// </summary>
/// <remarks>Not thread-safe: one session uses its cache from one thread at a time.</remarks>
public interface IKvCache : IDisposable
{
    /// <summary>Number of sequences (rows) in the batch.</summary>
    int BatchSize { get; }

    /// <summary>The most positions the cache can hold.</summary>
    int MaxLength { get; }

    /// <summary>The number of positions filled; the next forward pass starts at this position.</summary>
    int Length { get; }

    /// <summary>Reorders batch rows: row <c>i</c> becomes a copy of former row <c>hypoIds[i]</c> (beam search).</summary>
    /// <param name="hypoIds">One source row index per row, each in <c>[0, BatchSize)</c>.</param>
    /// <exception cref="ArgumentException">When the length differs from <see cref="BatchSize"/> or an index is out of range.</exception>
    void Reorder(ReadOnlySpan<int> hypoIds);

    /// <summary>Rolls the cache back so that it holds only the first <paramref name="length"/> positions.</summary>
    /// <param name="length">The new length, between 0 and <see cref="Length"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="length"/> is outside <c>[0, Length]</c>.</exception>
    void Truncate(int length);
}
