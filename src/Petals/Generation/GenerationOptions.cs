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

    /// <summary>
    /// The LoRA adapter to generate with, by name: one the blocks hold (a swarm's servers loaded with
    /// <c>petals serve --adapters NAME=DIR</c>, or the named adapters of a <c>LocalTransformerBlocks</c>). The session is
    /// opened with <c>new BlockAdaptation { Adapter = name }</c>. <see langword="null"/> (the default) uses the plain weights.
    /// Must be a valid name (<see cref="Discovery.AnnouncementLimits.IsValidAdapterName"/>).
    /// </summary>
    public string? Adapter { get; init; }

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">When a value is out of range.</exception>
    /// <exception cref="ArgumentException">When <see cref="Adapter"/> is not a valid adapter name.</exception>
    public void Validate()
    {
        if (Adapter is not null && !Discovery.AnnouncementLimits.IsValidAdapterName(Adapter, out var fault))
        {
            throw new ArgumentException($"GenerationOptions.Adapter: {fault}", nameof(Adapter));
        }

        if (MaxNewTokens < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "MaxNewTokens must be at least 1.");
        }

        ArgumentNullException.ThrowIfNull(Sampling);
        Sampling.Validate();
    }
}
