namespace Petals.Generation;

/// <summary>How the next token is chosen from the logits.</summary>
/// <remarks>
/// The order of operations is the Hugging Face one: repetition penalty (then the OpenAI-style frequency and presence
/// penalties), temperature, top-k, top-p, then a draw. Temperature 0 means greedy (argmax after the penalties).
/// </remarks>
public sealed record SamplingOptions
{
    /// <summary>Greedy decoding: the most likely token every step.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Softmax temperature; 0 means greedy. Default 1.</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Keep only the <c>TopK</c> most likely tokens; 0 disables. Default 0.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probabilities sum to at least <c>TopP</c>; 1 disables. Default 1.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Divides positive (multiplies negative) logits of tokens already in the sequence; 1 disables. Default 1.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>
    /// OpenAI-style frequency penalty: subtracted from a token's logit once per time the token was already generated
    /// (<c>logit -= FrequencyPenalty * count</c>); counts only generated tokens, not the prompt. 0 disables; negative values
    /// favour repetition. Default 0.
    /// </summary>
    public double FrequencyPenalty { get; init; }

    /// <summary>
    /// OpenAI-style presence penalty: subtracted once from the logit of every token already generated at least once
    /// (<c>logit -= PresencePenalty</c>); counts only generated tokens, not the prompt. 0 disables. Default 0.
    /// </summary>
    public double PresencePenalty { get; init; }

    /// <summary>Seed of the random draw; <see langword="null"/> for a random seed. Default null.</summary>
    public int? Seed { get; init; }

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">When a value is out of its range; the message names it.</exception>
    public void Validate()
    {
        if (!(Temperature >= 0) || double.IsInfinity(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "Temperature must be a finite number >= 0.");
        }

        if (TopK < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "TopK must be >= 0 (0 disables it).");
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1] (1 disables it).");
        }

        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty))
        {
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "RepetitionPenalty must be a finite number > 0 (1 disables it).");
        }

        if (!double.IsFinite(FrequencyPenalty))
        {
            throw new ArgumentOutOfRangeException(nameof(FrequencyPenalty), FrequencyPenalty, "FrequencyPenalty must be a finite number (0 disables it).");
        }

        if (!double.IsFinite(PresencePenalty))
        {
            throw new ArgumentOutOfRangeException(nameof(PresencePenalty), PresencePenalty, "PresencePenalty must be a finite number (0 disables it).");
        }
    }
}
