using Microsoft.Extensions.AI;
using Petals.Generation;

namespace Petals.Extensions.AI;

/// <summary>What a request asks of the model, once its <see cref="ChatOptions"/> are checked and mapped.</summary>
/// <param name="Generation">The generation options (sampling, token limit; the model's end-of-sequence tokens stop it).</param>
/// <param name="StopSequences">Text stop sequences (non-empty strings).</param>
/// <param name="Instructions">Extra system instructions (<see cref="ChatOptions.Instructions"/>), or null.</param>
internal sealed record ChatRequest(GenerationOptions Generation, IReadOnlyList<string> StopSequences, string? Instructions);

/// <summary>
/// Maps <see cref="ChatOptions"/> to <see cref="ChatRequest"/>, refusing what the client cannot honour rather than ignoring it.
/// </summary>
internal static class ChatOptionsTranslator
{
    /// <summary>Checks and maps <paramref name="options"/>.</summary>
    /// <exception cref="NotSupportedException">For tools, a non-text response format, reasoning options, background
    /// responses, continuation tokens, raw representation factories, additional properties, or a model id other than the client's.</exception>
    /// <exception cref="ArgumentOutOfRangeException">For a value out of range; the message names the <see cref="ChatOptions"/> property.</exception>
    /// <exception cref="ArgumentException">For an empty stop sequence.</exception>
    public static ChatRequest Translate(ChatOptions? options, string? clientModelId, int defaultMaxOutputTokens)
    {
        if (options is null)
        {
            return new ChatRequest(new GenerationOptions { MaxNewTokens = defaultMaxOutputTokens, Sampling = SamplingOptions.Greedy }, [], null);
        }

        if (options.Tools is { Count: > 0 } tools)
        {
            throw new NotSupportedException(
                $"ChatOptions.Tools: the Petals chat client cannot call tools (got {tools.Count}: {string.Join(", ", tools.Select(t => t.Name))}); remove them.");
        }

        if (options.ToolMode is { } mode && mode is not NoneChatToolMode)
        {
            throw new NotSupportedException($"ChatOptions.ToolMode {mode}: the Petals chat client cannot call tools; leave it null or ChatToolMode.None.");
        }

        if (options.ResponseFormat is { } format && format is not ChatResponseFormatText)
        {
            throw new NotSupportedException("ChatOptions.ResponseFormat: the Petals chat client produces plain text only (no JSON mode or JSON schema); leave it null or ChatResponseFormat.Text.");
        }

        if (options.Reasoning is not null)
        {
            throw new NotSupportedException("ChatOptions.Reasoning: the Petals chat client has no reasoning controls; leave it null.");
        }

        if (options.AllowBackgroundResponses is true)
        {
            throw new NotSupportedException("ChatOptions.AllowBackgroundResponses: the Petals chat client has no background responses.");
        }

        if (options.ContinuationToken is not null)
        {
            throw new NotSupportedException("ChatOptions.ContinuationToken: the Petals chat client has no background responses to continue.");
        }

        if (options.RawRepresentationFactory is not null)
        {
            throw new NotSupportedException("ChatOptions.RawRepresentationFactory: the Petals chat client has no provider-specific options object.");
        }

        if (options.AdditionalProperties is { Count: > 0 } extra)
        {
            throw new NotSupportedException(
                $"ChatOptions.AdditionalProperties: the Petals chat client knows no additional properties (got {string.Join(", ", extra.Keys)}).");
        }

        if (options.ModelId is { } requested && !string.Equals(requested, clientModelId, StringComparison.Ordinal))
        {
            throw new NotSupportedException(
                $"ChatOptions.ModelId '{requested}' is not this client's model ('{clientModelId ?? "(no id)"}'); a Petals chat client serves one model.");
        }

        var maxNewTokens = options.MaxOutputTokens ?? defaultMaxOutputTokens;
        if (maxNewTokens < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), maxNewTokens, "ChatOptions.MaxOutputTokens must be at least 1.");
        }

        if (options.Temperature is { } t && (!float.IsFinite(t) || t < 0))
        {
            throw new ArgumentOutOfRangeException(nameof(options), t, "ChatOptions.Temperature must be a finite number >= 0 (0 is greedy).");
        }

        if (options.TopP is { } p && !(p > 0 && p <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(options), p, "ChatOptions.TopP must be in (0, 1].");
        }

        if (options.TopK is { } k && k < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), k, "ChatOptions.TopK must be at least 1.");
        }

        if (options.FrequencyPenalty is { } fp && !float.IsFinite(fp))
        {
            throw new ArgumentOutOfRangeException(nameof(options), fp, "ChatOptions.FrequencyPenalty must be a finite number.");
        }

        if (options.PresencePenalty is { } pp && !float.IsFinite(pp))
        {
            throw new ArgumentOutOfRangeException(nameof(options), pp, "ChatOptions.PresencePenalty must be a finite number.");
        }

        var stops = new List<string>();
        if (options.StopSequences is { } given)
        {
            for (var i = 0; i < given.Count; i++)
            {
                if (string.IsNullOrEmpty(given[i]))
                {
                    throw new ArgumentException($"ChatOptions.StopSequences[{i}] is empty; a stop sequence needs at least one character.", nameof(options));
                }

                stops.Add(given[i]);
            }
        }

        // Greedy unless a temperature is given; top-p or top-k alone sample at temperature 1 rather than being ignored.
        var temperature = options.Temperature ?? (options.TopP is not null || options.TopK is not null ? 1.0 : 0.0);
        var sampling = new SamplingOptions
        {
            Temperature = temperature,
            TopP = options.TopP ?? 1.0,
            TopK = options.TopK ?? 0,
            FrequencyPenalty = options.FrequencyPenalty ?? 0,
            PresencePenalty = options.PresencePenalty ?? 0,
            Seed = options.Seed is { } seed ? FoldSeed(seed) : null,
        };
        return new ChatRequest(new GenerationOptions { MaxNewTokens = maxNewTokens, Sampling = sampling }, stops, options.Instructions);
    }

    /// <summary>The sampler takes a 32-bit seed: one in range is used as is, a wider one folded (same seed, same draws).</summary>
    private static int FoldSeed(long seed) => seed is >= int.MinValue and <= int.MaxValue ? (int)seed : (int)(seed ^ (seed >> 32));
}
