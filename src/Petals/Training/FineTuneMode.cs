namespace Petals.Training;

/// <summary>What a <see cref="TrainableModel"/> trains besides its optional classification head.</summary>
public enum FineTuneMode
{
    /// <summary>
    /// Prompt tuning (<c>ptune</c>): <see cref="FineTuneOptions.PromptTokens"/> trainable embeddings prepended to the token
    /// embeddings of every sequence. Their gradient is dLoss/d(block-0 input) at the prefix positions.
    /// </summary>
    PromptTuning,

    /// <summary>
    /// Deep prompt tuning (<c>deep_ptune</c>, as Petals): the prompt-tuning prefix plus a trainable prefix per block, sent as
    /// <see cref="Execution.BlockAdaptation.Prompts"/> and added to the hidden states of the prefix positions at each block's input.
    /// </summary>
    DeepPromptTuning,

    /// <summary>
    /// Client-owned LoRA for every block, sent as <see cref="Execution.BlockAdaptation.Lora"/> with each call; gradients
    /// come back as <see cref="Execution.BlockGradients.Lora"/>. No prefix.
    /// </summary>
    Lora,
}
