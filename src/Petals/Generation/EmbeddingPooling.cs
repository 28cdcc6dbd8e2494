namespace Petals.Generation;

/// <summary>How <see cref="CausalLanguageModel.EmbedAsync"/> turns the final hidden states of a text into one vector.</summary>
public enum EmbeddingPooling
{
    /// <summary>The mean over every position (BOS included when the tokenizer adds it) of the final-norm hidden states.</summary>
    Mean,

    /// <summary>The final-norm hidden state of the last position (which, in a causal model, has attended to all others).</summary>
    LastToken,
}
