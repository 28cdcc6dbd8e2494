namespace Petals.Training;

/// <summary>What one training step did.</summary>
/// <param name="Step">The step number after it (1 for the first).</param>
/// <param name="Loss">The batch's mean loss before the update, in nats.</param>
/// <param name="GradientNorm">The global gradient norm before clipping (NaN when clipping is off).</param>
/// <param name="Tokens">Real tokens in the batch.</param>
public sealed record TrainingStep(long Step, double Loss, double GradientNorm, int Tokens);
