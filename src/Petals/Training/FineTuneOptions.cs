using System.Globalization;
using Petals.Execution;

namespace Petals.Training;

/// <summary>The trainable parameters of a <see cref="TrainableModel"/> and how they start.</summary>
public sealed record FineTuneOptions
{
    /// <summary>What is trained. Default <see cref="FineTuneMode.PromptTuning"/>.</summary>
    public FineTuneMode Mode { get; init; } = FineTuneMode.PromptTuning;

    /// <summary>Prefix length of prompt tuning and deep prompt tuning. Default 16; unused by <see cref="FineTuneMode.Lora"/>.</summary>
    public int PromptTokens { get; init; } = 16;

    /// <summary>The LoRA rank r. Default 8.</summary>
    public int LoraRank { get; init; } = 8;

    /// <summary>The LoRA alpha; the adapters' output is scaled by <c>alpha / r</c> (PEFT). Default 16.</summary>
    public float LoraAlpha { get; init; } = 16;

    /// <summary>The adapted layers of every block. Default query and value (<c>q_proj</c>, <c>v_proj</c>), as PEFT's Llama default.</summary>
    public IReadOnlyList<LoraTarget> LoraTargets { get; init; } = [LoraTarget.Query, LoraTarget.Value];

    /// <summary>Classes of a client-side sequence-classification head, or 0 (default) to train the causal-LM objective.</summary>
    public int ClassCount { get; init; }

    /// <summary>What the classification head reads. Default <see cref="ClassificationPooling.LastToken"/>.</summary>
    public ClassificationPooling Pooling { get; init; } = ClassificationPooling.LastToken;

    /// <summary>
    /// Seed of the initial values: prefixes start as the embeddings of seeded random tokens, deep prompts at zero, LoRA A
    /// kaiming-uniform (bound <c>1/√in</c>), LoRA B zero, the head's weights uniform in <c>±1/√hidden</c> and its bias zero. Default 0.
    /// </summary>
    public int Seed { get; init; }

    /// <summary>The prefix positions this mode prepends: <see cref="PromptTokens"/> for prompt tuning and deep prompt tuning, 0 for LoRA.</summary>
    public int PrefixLength => Mode == FineTuneMode.Lora ? 0 : PromptTokens;

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentException">A value is out of range; the message names it.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Mode))
        {
            throw new ArgumentException($"Unknown fine-tuning mode {Mode}.");
        }

        if (Mode != FineTuneMode.Lora && PromptTokens < 1)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"PromptTokens is {PromptTokens}; prompt tuning needs at least 1."));
        }

        if (Mode == FineTuneMode.Lora)
        {
            if (LoraRank < 1)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"LoraRank is {LoraRank}; it must be at least 1."));
            }

            if (!float.IsFinite(LoraAlpha) || LoraAlpha <= 0)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"LoraAlpha is {LoraAlpha}; it must be positive and finite."));
            }

            if (LoraTargets is null || LoraTargets.Count == 0 || LoraTargets.Distinct().Count() != LoraTargets.Count)
            {
                throw new ArgumentException("LoraTargets must name at least one layer, each once.");
            }
        }

        if (ClassCount is < 0 or 1)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"ClassCount is {ClassCount}; it is 0 (no head) or at least 2."));
        }
    }
}
