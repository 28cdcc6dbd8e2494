namespace Petals.Training;

/// <summary>
/// A batch of examples padded to one length: token ids <c>[BatchSize, SequenceLength]</c> (padding after each sequence's
/// <see cref="Lengths"/> tokens), and the classes of a classification batch.
/// </summary>
public sealed class TrainingBatch
{
    /// <summary>Creates a batch.</summary>
    /// <param name="tokenIds">Ids <c>[batch, sequenceLength]</c>, row-major.</param>
    /// <param name="lengths">Real tokens per sequence (1..sequenceLength).</param>
    /// <param name="sequenceLength">Positions per sequence.</param>
    /// <param name="labels">Classes per sequence, or <see langword="null"/>.</param>
    /// <exception cref="ArgumentException">The sizes disagree.</exception>
    public TrainingBatch(int[] tokenIds, int[] lengths, int sequenceLength, int[]? labels = null)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceLength, 1);
        if (lengths.Length == 0 || tokenIds.Length != lengths.Length * sequenceLength || (labels is not null && labels.Length != lengths.Length))
        {
            throw new ArgumentException($"A batch of {lengths.Length} sequences of {sequenceLength} positions needs {lengths.Length * sequenceLength} ids and as many labels as sequences; got {tokenIds.Length} ids and {labels?.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "no"} labels.");
        }

        foreach (var length in lengths)
        {
            if (length < 1 || length > sequenceLength)
            {
                throw new ArgumentException($"A sequence length of {length} is outside [1, {sequenceLength}].", nameof(lengths));
            }
        }

        TokenIds = tokenIds;
        Lengths = lengths;
        SequenceLength = sequenceLength;
        Labels = labels;
    }

    /// <summary>Sequences in the batch.</summary>
    public int BatchSize => Lengths.Length;

    /// <summary>Positions per sequence (padded).</summary>
    public int SequenceLength { get; }

    /// <summary>Ids <c>[BatchSize, SequenceLength]</c>.</summary>
    public int[] TokenIds { get; }

    /// <summary>Real tokens per sequence.</summary>
    public int[] Lengths { get; }

    /// <summary>Classes per sequence, or <see langword="null"/>.</summary>
    public int[]? Labels { get; }

    /// <summary>Real tokens in the batch.</summary>
    public int TokenCount => Lengths.Sum();

    /// <summary>Pads <paramref name="examples"/> into a batch of <paramref name="sequenceLength"/> positions with <paramref name="padId"/>.</summary>
    /// <param name="examples">At least one example, each at most <paramref name="sequenceLength"/> tokens.</param>
    /// <param name="sequenceLength">Positions per sequence.</param>
    /// <param name="padId">The id written after each sequence (never trained on).</param>
    /// <returns>The batch.</returns>
    public static TrainingBatch From(IReadOnlyList<TextExample> examples, int sequenceLength, int padId)
    {
        ArgumentNullException.ThrowIfNull(examples);
        var ids = new int[examples.Count * sequenceLength];
        Array.Fill(ids, padId);
        var lengths = new int[examples.Count];
        var labels = examples.Count > 0 && examples[0].Label.HasValue ? new int[examples.Count] : null;
        for (var b = 0; b < examples.Count; b++)
        {
            var tokens = examples[b].TokenIds;
            if (tokens.Length > sequenceLength)
            {
                throw new ArgumentException($"The example of line {examples[b].LineNumber} holds {tokens.Length} tokens; the batch holds {sequenceLength}.", nameof(examples));
            }

            tokens.CopyTo(ids, b * sequenceLength);
            lengths[b] = tokens.Length;
            if (labels is not null)
            {
                labels[b] = examples[b].Label ?? throw new ArgumentException($"The example of line {examples[b].LineNumber} has no label.", nameof(examples));
            }
        }

        return new TrainingBatch(ids, lengths, sequenceLength, labels);
    }
}
