namespace Petals.Generation;

/// <summary>Options of one generation.</summary>
public sealed record GenerationOptions
{
    /// <summary>The most tokens to generate. Default 64.</summary>
    public int MaxNewTokens { get; init; } = 64;

    /// <summary>How tokens are chosen. Default <see cref="SamplingOptions.Greedy"/>.</summary>
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;

    /// <summary>
    /// Tokens that end generation (the stop token itself is returned). <see langword="null"/> (the default)
    /// means the model's end-of-sequence tokens; an empty list means none.
    /// </summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">When a value is out of range.</exception>
    public void Validate()
    {
        if (MaxNewTokens < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "MaxNewTokens must be at least 1.");
        }

        ArgumentNullException.ThrowIfNull(Sampling);
        Sampling.Validate();
    }
}
