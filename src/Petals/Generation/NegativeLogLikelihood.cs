namespace Petals.Generation;

/// <summary>The teacher-forced negative log-likelihood of a token sequence.</summary>
/// <param name="MeanNll">Mean negative log-likelihood in nats per predicted token.</param>
/// <param name="PredictedTokens">Number of predicted tokens (every token after the first).</param>
public sealed record NegativeLogLikelihood(double MeanNll, int PredictedTokens)
{
    /// <summary>The perplexity, <c>exp(MeanNll)</c>.</summary>
    public double Perplexity => Math.Exp(MeanNll);
}
