using Petals.Generation;

namespace Petals.Extensions.AI;

/// <summary>Options of <see cref="PetalsEmbeddingGenerator"/>.</summary>
public sealed class PetalsEmbeddingGeneratorOptions
{
    /// <summary>
    /// How the final-norm hidden states of a text's positions become one vector (<see cref="CausalLanguageModel.EmbedAsync"/>):
    /// <see cref="EmbeddingPooling.Mean"/> averages every position (BOS included when the tokenizer adds it),
    /// <see cref="EmbeddingPooling.LastToken"/> takes the last position. The LM head is never applied. Default
    /// <see cref="EmbeddingPooling.Mean"/>.
    /// </summary>
    public EmbeddingPooling Pooling { get; set; } = EmbeddingPooling.Mean;

    /// <summary>
    /// Whether each vector is scaled to unit L2 norm (so that a dot product is the cosine similarity); a zero vector stays
    /// zero. Default <see langword="false"/>: the pooled hidden state as the model computes it.
    /// </summary>
    public bool Normalize { get; set; }

    /// <summary>The model id reported in the metadata and on each embedding; the model's own id when null. Default null.</summary>
    public string? ModelId { get; set; }

    /// <summary>
    /// The most texts of one <c>GenerateAsync</c> call embedded at once (each opens its own session on the model's blocks,
    /// i.e. one remote inference session per text on a swarm). At least 1. Default 4.
    /// </summary>
    public int MaxConcurrency { get; set; } = 4;
}
