namespace Petals.Generation;

/// <summary>How the next token is chosen from the logits.</summary>
/// <remarks>
/// The order of operations is the Hugging Face one: repetition penalty, temperature, top-k, top-p, then
/// a draw. Temperature 0 means greedy (argmax after the repetition penalty).
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
    }
}
