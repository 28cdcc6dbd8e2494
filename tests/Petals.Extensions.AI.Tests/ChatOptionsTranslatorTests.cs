using Microsoft.Extensions.AI;
using Petals.Generation;

namespace Petals.Extensions.AI.Tests;

/// <summary>How <see cref="ChatOptions"/> map to generation options.</summary>
public sealed class ChatOptionsTranslatorTests
{
    [Fact]
    public void No_options_is_greedy_with_the_default_token_limit()
    {
        var request = ChatOptionsTranslator.Translate(null, "m", 77);
        Assert.Equal(77, request.Generation.MaxNewTokens);
        Assert.Equal(SamplingOptions.Greedy, request.Generation.Sampling);
        Assert.Null(request.Generation.StopTokenIds);
        Assert.Empty(request.StopSequences);
    }

    [Fact]
    public void Every_supported_option_maps_to_its_sampling_field()
    {
        var request = ChatOptionsTranslator.Translate(new ChatOptions
        {
            MaxOutputTokens = 12,
            Temperature = 0.5f,
            TopP = 0.75f,
            TopK = 8,
            FrequencyPenalty = 0.25f,
            PresencePenalty = -0.5f,
            Seed = 42,
            StopSequences = ["\n\n"],
            Instructions = "Be brief.",
            ModelId = "m",
            ConversationId = "hint only",
            ResponseFormat = ChatResponseFormat.Text,
            ToolMode = ChatToolMode.None,
        }, "m", 256);
        Assert.Equal(12, request.Generation.MaxNewTokens);
        Assert.Equal(new SamplingOptions { Temperature = 0.5, TopP = 0.75, TopK = 8, FrequencyPenalty = 0.25, PresencePenalty = -0.5, Seed = 42 }, request.Generation.Sampling);
        Assert.Equal(["\n\n"], request.StopSequences);
        Assert.Equal("Be brief.", request.Instructions);
    }

    [Fact]
    public void Top_p_or_top_k_without_a_temperature_sample_at_temperature_one()
    {
        Assert.Equal(1.0, ChatOptionsTranslator.Translate(new ChatOptions { TopK = 5 }, null, 8).Generation.Sampling.Temperature);
        Assert.Equal(1.0, ChatOptionsTranslator.Translate(new ChatOptions { TopP = 0.5f }, null, 8).Generation.Sampling.Temperature);
        Assert.Equal(0.0, ChatOptionsTranslator.Translate(new ChatOptions { Seed = 3 }, null, 8).Generation.Sampling.Temperature);
    }

    [Fact]
    public void Seeds_wider_than_32_bits_fold_deterministically()
    {
        var a = ChatOptionsTranslator.Translate(new ChatOptions { Seed = 1L << 40 }, null, 8).Generation.Sampling.Seed;
        var b = ChatOptionsTranslator.Translate(new ChatOptions { Seed = 1L << 40 }, null, 8).Generation.Sampling.Seed;
        var c = ChatOptionsTranslator.Translate(new ChatOptions { Seed = (1L << 40) + 1 }, null, 8).Generation.Sampling.Seed;
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.Equal(-7, ChatOptionsTranslator.Translate(new ChatOptions { Seed = -7 }, null, 8).Generation.Sampling.Seed);
    }

    [Fact]
    public void A_model_id_is_refused_when_the_client_has_none_or_another()
    {
        Assert.Contains("(no id)", Assert.Throws<NotSupportedException>(() => ChatOptionsTranslator.Translate(new ChatOptions { ModelId = "x" }, null, 8)).Message, StringComparison.Ordinal);
        Assert.Contains("'y'", Assert.Throws<NotSupportedException>(() => ChatOptionsTranslator.Translate(new ChatOptions { ModelId = "x" }, "y", 8)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Raw_representation_factories_and_continuation_tokens_are_refused()
    {
        Assert.Contains("RawRepresentationFactory", Assert.Throws<NotSupportedException>(() =>
            ChatOptionsTranslator.Translate(new ChatOptions { RawRepresentationFactory = _ => null }, null, 8)).Message, StringComparison.Ordinal);
        Assert.Contains("FrequencyPenalty", Assert.Throws<ArgumentOutOfRangeException>(() =>
            ChatOptionsTranslator.Translate(new ChatOptions { FrequencyPenalty = float.NaN }, null, 8)).Message, StringComparison.Ordinal);
        Assert.Contains("PresencePenalty", Assert.Throws<ArgumentOutOfRangeException>(() =>
            ChatOptionsTranslator.Translate(new ChatOptions { PresencePenalty = float.PositiveInfinity }, null, 8)).Message, StringComparison.Ordinal);
    }
}
