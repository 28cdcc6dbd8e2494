namespace Petals.Training;

/// <summary>The loss of one batch.</summary>
/// <param name="Sum">The summed loss in nats (over predicted tokens, or over sequences with a classification head).</param>
/// <param name="Count">The number of terms in <paramref name="Sum"/>.</param>
/// <param name="Predictions">With a classification head, the most likely class of each sequence; otherwise <see langword="null"/>.</param>
public sealed record BatchEvaluation(double Sum, int Count, IReadOnlyList<int>? Predictions)
{
    /// <summary>The mean loss.</summary>
    public double Mean => Sum / Count;
}
