namespace Petals.Training;

/// <summary>The evaluation of a data set.</summary>
/// <param name="MeanLoss">The mean loss in nats (per predicted token for causal-LM data: the held-out NLL; per sequence with a head).</param>
/// <param name="Count">The number of terms averaged.</param>
/// <param name="Accuracy">With a classification head, the fraction of sequences whose most likely class is their label; otherwise <see langword="null"/>.</param>
public sealed record DatasetEvaluation(double MeanLoss, int Count, double? Accuracy);
