using Petals.Generation;

namespace Petals.ML;

/// <summary>Options of <see cref="PetalsTextCatalogExtensions.PetalsEmbed"/>.</summary>
public sealed record PetalsEmbeddingOptions
{
    /// <summary>How the final hidden states of a text are pooled into one vector; <see cref="EmbeddingPooling.Mean"/> by default.</summary>
    public EmbeddingPooling Pooling { get; init; } = EmbeddingPooling.Mean;

    /// <summary>Rows gathered by a cursor before they are sent to the model together; 16 by default (1 to 4096).</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Rows of a batch computed at the same time (each on its own session); 4 by default (at least 1).</summary>
    public int MaxConcurrency { get; init; } = 4;

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentOutOfRangeException">When a value is out of its range.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Pooling))
        {
            throw new ArgumentOutOfRangeException(nameof(Pooling), Pooling, "Unknown pooling.");
        }

        if (BatchSize is < 1 or > PetalsBatching.MaxBatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"BatchSize must be between 1 and {PetalsBatching.MaxBatchSize}.");
        }

        if (MaxConcurrency < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxConcurrency), MaxConcurrency, "MaxConcurrency must be at least 1.");
        }
    }
}
