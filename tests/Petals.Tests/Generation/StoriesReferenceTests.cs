using System.Text.Json;
using Petals.Backends.Cpu;
using Petals.Generation;
using Petals.Testing;

namespace Petals.Tests.Generation;

/// <summary>
/// The real tiny Llama (stories260K) against an independent PyTorch implementation
/// (tests/reference/stories260k_reference.py: its own GGUF parser and tokenizer, Meta's interleaved rotary
/// applied to the stored rows). A wrong rotary layout, norm or attention changes the greedy tokens.
/// </summary>
public sealed class StoriesReferenceTests
{
    private static readonly JsonElement Reference = JsonDocument.Parse(
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Generation", "Fixtures", "stories260k-reference.json"))).RootElement;

    [Fact]
    public async Task GreedyGenerationEqualsThePyTorchReferenceTokenForToken()
    {
        using var model = Load();
        var prompt = model.EncodePrompt("Once upon a time");
        Assert.Equal(Ints("prompt_ids"), prompt);

        var expected = Ints("greedy_ids");
        var generated = new List<int>();
        await foreach (var id in model.GenerateAsync(prompt, new GenerationOptions { MaxNewTokens = expected.Length }, TestContext.Current.CancellationToken))
        {
            generated.Add(id);
        }

        Assert.Equal(expected, generated);
        var text = model.Tokenizer!.Decode(generated.ToArray(), skipSpecialTokens: true);
        Assert.StartsWith(", there was a little girl named Lily.", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StoryPerplexityIsLowAndMatchesTheReference()
    {
        using var model = Load();
        var story = Reference.GetProperty("story").GetString()!;
        var ids = Ints("story_ids");
        var bos = model.Tokenizer!.BosTokenId!.Value;
        Assert.Equal(ids, (int[])[bos, .. model.Tokenizer.Encode(story, addSpecialTokens: false)]);

        var nll = await model.ComputeNegativeLogLikelihoodAsync(ids, TestContext.Current.CancellationToken);

        Assert.Equal(ids.Length - 1, nll.PredictedTokens);
        Assert.True(nll.MeanNll < 2.0, $"NLL {nll.MeanNll} nats/token is too high for a correct implementation.");
        Assert.Equal(Reference.GetProperty("story_nll").GetDouble(), nll.MeanNll, 1e-4);
    }

    [Fact]
    public void EmbeddedVocabularyTokenizesLikeTheReference()
    {
        using var model = Load();
        foreach (var entry in Reference.GetProperty("tokenize").EnumerateObject())
        {
            var expected = entry.Value.EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(expected, model.Tokenizer!.Encode(entry.Name, addSpecialTokens: false));
            Assert.Equal(entry.Name, model.Tokenizer.Decode(expected));
        }
    }

    private static CausalLanguageModel Load()
    {
        if (!TestData.SharedAvailable)
        {
            Assert.Skip(TestData.MissingMessage);
        }

        return CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, new CpuBlockExecutorFactory());
    }

    private static int[] Ints(string name) => Reference.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();
}
