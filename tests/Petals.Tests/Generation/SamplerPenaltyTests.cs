using FsCheck;
using FsCheck.Fluent;
using Petals.Generation;

namespace Petals.Tests.Generation;

/// <summary>OpenAI-style frequency and presence penalties: additive, on counts of generated tokens only.</summary>
public sealed class SamplerPenaltyTests
{
    [Fact]
    public void TheFrequencyPenaltyGrowsWithEachGeneratedOccurrenceAndIgnoresThePrompt()
    {
        var sampler = new Sampler(SamplingOptions.Greedy with { FrequencyPenalty = 0.3 });

        // Token 0 generated twice: 5 - 0.6 = 4.4 < 4.5. Token 1 is only in the prompt: not penalized.
        Span<float> logits = [5f, 4.5f, 1f];
        Assert.Equal(1, sampler.Sample(logits, [1, 1, 1, 0, 0], generatedCount: 2));
        Assert.Equal([4.4f, 4.5f, 1f], logits.ToArray());

        // Generated once: 5 - 0.3 = 4.7 still wins.
        Assert.Equal(0, sampler.Sample(new float[] { 5f, 4.5f, 1f }, [1, 1, 1, 0], generatedCount: 1));
    }

    [Fact]
    public void ThePresencePenaltyIsSubtractedOnceWhateverTheCount()
    {
        var sampler = new Sampler(SamplingOptions.Greedy with { PresencePenalty = 0.4 });
        float[] logits = [5f, 4.8f, 4.7f];
        Assert.Equal(1, sampler.Sample(logits, [0, 0, 0, 0], generatedCount: 4));
        Assert.Equal(4.6f, logits[0], 5);
        Assert.Equal(4.8f, logits[1]);
    }

    [Fact]
    public void NegativePenaltiesFavourRepetition()
    {
        var sampler = new Sampler(SamplingOptions.Greedy with { FrequencyPenalty = -1, PresencePenalty = -0.5 });
        Assert.Equal(2, sampler.Sample(new float[] { 5f, 4f, 3f }, [2, 2], generatedCount: 2));
    }

    [Fact]
    public void WithoutAGeneratedCountEveryPreviousTokenCounts()
    {
        var sampler = new Sampler(SamplingOptions.Greedy with { FrequencyPenalty = 1 });
        Assert.Equal(1, sampler.Sample(new float[] { 5f, 4.5f }, [0]));
    }

    [Fact]
    public void BadPenaltiesAndCountsAreRejectedByName()
    {
        foreach (var options in new[]
        {
            new SamplingOptions { FrequencyPenalty = double.NaN },
            new SamplingOptions { FrequencyPenalty = double.PositiveInfinity },
            new SamplingOptions { PresencePenalty = double.NegativeInfinity },
        })
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(options));
            Assert.Contains("Penalty", error.ParamName, StringComparison.Ordinal);
        }

        var sampler = new Sampler(SamplingOptions.Greedy with { PresencePenalty = 1 });
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.Sample(new float[] { 1f, 2f }, [0], generatedCount: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.Sample(new float[] { 1f, 2f }, [0], generatedCount: -1));
    }

    [Fact]
    public void GreedyWithPenaltiesIsTheArgMaxOfTheOpenAiFormula()
    {
        Prop.ForAll(
            Gen.Choose(-40, 40).Select(i => i / 8f).ArrayOf(12).ToArbitrary(),
            Gen.Choose(0, 11).ArrayOf().SelectMany(p => Gen.Choose(0, 11).ArrayOf().Select(g => (p, g))).ToArbitrary(),
            Gen.Elements(0.0, 0.25, -0.5, 1.5).SelectMany(f => Gen.Elements(0.0, 0.5, -0.25, 2.0).Select(p => (f, p))).ToArbitrary(),
            (logits, tokens, penalties) =>
            {
                var (prompt, generated) = tokens;
                var (frequency, presence) = penalties;
                var expected = (float[])logits.Clone();
                for (var t = 0; t < expected.Length; t++)
                {
                    var count = generated.Count(g => g == t);
                    expected[t] = (float)(expected[t] - (frequency * count) - (count > 0 ? presence : 0));
                }

                var sampler = new Sampler(SamplingOptions.Greedy with { FrequencyPenalty = frequency, PresencePenalty = presence });
                var actual = (float[])logits.Clone();
                var chosen = sampler.Sample(actual, [.. prompt, .. generated], generated.Length);
                Assert.Equal(expected, actual);
                Assert.Equal(Sampler.ArgMax(expected), chosen);
            }).QuickCheckThrowOnFailure();
    }
}
