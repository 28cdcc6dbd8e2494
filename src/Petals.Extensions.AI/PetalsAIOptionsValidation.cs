using Petals.Generation;

namespace Petals.Extensions.AI;

/// <summary>Checks the options of the chat client and the embedding generator; every failure names the field and the value.</summary>
internal static class PetalsAIOptionsValidation
{
    /// <summary>The failures of <paramref name="options"/>; empty when valid.</summary>
    public static List<string> Check(PetalsEmbeddingGeneratorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (options.Pooling is not (EmbeddingPooling.Mean or EmbeddingPooling.LastToken))
        {
            failures.Add($"PetalsEmbeddingGeneratorOptions.Pooling must be Mean or LastToken, not {options.Pooling}.");
        }

        if (options.MaxConcurrency < 1)
        {
            failures.Add($"PetalsEmbeddingGeneratorOptions.MaxConcurrency must be at least 1, not {options.MaxConcurrency}.");
        }

        CheckModelId(options.ModelId, nameof(PetalsEmbeddingGeneratorOptions), failures);
        return failures;
    }

    /// <summary>The failures of <paramref name="options"/>; empty when valid.</summary>
    public static List<string> Check(PetalsChatClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (options.DefaultMaxOutputTokens < 1)
        {
            failures.Add($"PetalsChatClientOptions.DefaultMaxOutputTokens must be at least 1, not {options.DefaultMaxOutputTokens}.");
        }

        if (options.MaxCachedConversations < 0)
        {
            failures.Add($"PetalsChatClientOptions.MaxCachedConversations must be 0 (no reuse) or more, not {options.MaxCachedConversations}.");
        }

        if (options.ConversationMaxLength is < 2)
        {
            failures.Add($"PetalsChatClientOptions.ConversationMaxLength must be at least 2 positions, or null for the model's context, not {options.ConversationMaxLength}.");
        }

        if (options.ChatTemplate is { } template && string.IsNullOrWhiteSpace(template))
        {
            failures.Add("PetalsChatClientOptions.ChatTemplate is blank: give a Jinja chat template, or null for the model's own.");
        }

        CheckModelId(options.ModelId, nameof(PetalsChatClientOptions), failures);
        return failures;
    }

    private static void CheckModelId(string? modelId, string owner, List<string> failures)
    {
        if (modelId is not null && string.IsNullOrWhiteSpace(modelId))
        {
            failures.Add($"{owner}.ModelId is blank: give an id, or null for the model's own.");
        }
    }
}
