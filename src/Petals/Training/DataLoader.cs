namespace Petals.Training;

/// <summary>
/// Seeded batches over a data set: the examples are read in epochs, each epoch in an order shuffled by
/// <c>(seed, epoch)</c>; batch <c>k</c> holds the examples at positions <c>k·B … k·B+B−1</c> of that endless stream. A batch
/// is a pure function of the step, so a resumed run sees the same batches as an uninterrupted one.
/// </summary>
/// <remarks>Thread-safe: it holds no mutable state.</remarks>
public sealed class DataLoader
{
    private readonly IReadOnlyList<TextExample> _examples;
    private readonly int _seed;
    private readonly int _padId;

    /// <summary>Creates a loader.</summary>
    /// <param name="examples">The data set, at least one example.</param>
    /// <param name="batchSize">Sequences per batch, at least 1.</param>
    /// <param name="sequenceLength">Positions per sequence; examples are at most this long.</param>
    /// <param name="seed">The shuffling seed.</param>
    /// <param name="padId">The padding id.</param>
    public DataLoader(IReadOnlyList<TextExample> examples, int batchSize, int sequenceLength, int seed, int padId)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfZero(examples.Count, nameof(examples));
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceLength, 1);
        _examples = examples;
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        _seed = seed;
        _padId = padId;
    }

    /// <summary>Sequences per batch.</summary>
    public int BatchSize { get; }

    /// <summary>Positions per sequence.</summary>
    public int SequenceLength { get; }

    /// <summary>The batch of step <paramref name="step"/> (0-based).</summary>
    /// <param name="step">The step, 0 or more.</param>
    /// <returns>The batch.</returns>
    public TrainingBatch GetBatch(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        var n = _examples.Count;
        var picked = new TextExample[BatchSize];
        int[]? order = null;
        long orderEpoch = -1;
        for (var j = 0; j < BatchSize; j++)
        {
            var position = (step * BatchSize) + j;
            var epoch = position / n;
            if (epoch != orderEpoch)
            {
                order = Order(epoch);
                orderEpoch = epoch;
            }

            picked[j] = _examples[order![(int)(position % n)]];
        }

        return TrainingBatch.From(picked, SequenceLength, _padId);
    }

    private int[] Order(long epoch)
    {
        var order = Enumerable.Range(0, _examples.Count).ToArray();
        // Random(int) is the same sequence in every process (HashCode is not: it is randomised per process).
        new Random(unchecked((_seed * 1_000_003) + ((int)epoch * 7_919))).Shuffle(order);
        return order;
    }
}
