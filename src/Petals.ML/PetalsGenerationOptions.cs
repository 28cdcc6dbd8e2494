using Petals.Generation;

namespace Petals.ML;

/// <summary>Options of <see cref="PetalsTextCatalogExtensions.PetalsGenerate"/>.</summary>
public sealed record PetalsGenerationOptions
{
    /// <summary>Tokens generated at most after each row's text; 32 by default (at least 1).</summary>
    public int MaxNewTokens { get; init; } = 32;

    /// <summary>How tokens are chosen; greedy (<see cref="SamplingOptions.Greedy"/>) by default. With a seed, each row is
    /// sampled with that seed, so a row's text does not depend on its batch.</summary>
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;

    /// <summary>Tokens that end a row's generation (not printed); <see langword="null"/> for the model's end-of-sequence tokens.</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Rows gathered by a cursor before they are sent to the model together; 8 by default (1 to 4096).</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>Rows of a batch generated at the same time (each on its own session); 4 by default (at least 1).</summary>
    public int MaxConcurrency { get; init; } = 4;

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentOutOfRangeException">When a value is out of its range.</exception>
    /// <exception cref="ArgumentException">When the sampling options are invalid.</exception>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Sampling, nameof(Sampling));
        ToGenerationOptions().Validate();
        if (BatchSize is < 1 or > PetalsBatching.MaxBatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"BatchSize must be between 1 and {PetalsBatching.MaxBatchSize}.");
        }

        if (MaxConcurrency < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxConcurrency), MaxConcurrency, "MaxConcurrency must be at least 1.");
        }
    }

    internal GenerationOptions ToGenerationOptions() => new() { MaxNewTokens = MaxNewTokens, Sampling = Sampling, StopTokenIds = StopTokenIds };
}
