namespace Petals.Training;

/// <summary>Which final-normed hidden states a classification head reads.</summary>
public enum ClassificationPooling
{
    /// <summary>The final-normed hidden state of each sequence's last (non-padding) token.</summary>
    LastToken,

    /// <summary>The mean of the final-normed hidden states of each sequence's tokens (the prefix excluded, padding excluded).</summary>
    Mean,
}
