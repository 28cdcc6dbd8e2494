using FsCheck;
using FsCheck.Fluent;
using Petals.Generation;

namespace Petals.Tests.Generation;

public sealed class SamplerTests
{
    [Fact]
    public void GreedyPicksTheLargestLogitAndTheFirstOnTies()
    {
        var sampler = new Sampler(SamplingOptions.Greedy);
        Assert.Equal(2, sampler.Sample(new float[] { 0.1f, -3f, 5f, 4.9f }, []));
        Assert.Equal(1, sampler.Sample(new float[] { 0f, 7f, 7f, 1f }, []));
    }

    [Fact]
    public void ArgMaxIgnoresNaNAndRejectsAllNaN()
    {
        Assert.Equal(1, Sampler.ArgMax(new[] { float.NaN, 1f, 0f }));
        Assert.Equal(0, Sampler.ArgMax(new[] { float.NegativeInfinity, float.NegativeInfinity }));
        Assert.Throws<ArgumentException>(() => Sampler.ArgMax(new[] { float.NaN, float.NaN }));
    }

    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(2, 1.0)]
    [InlineData(0, 0.9)]
    public void SamplingNeverChoosesNaNAndRejectsOnlyAllNaN(int topK, double topP)
    {
        // As ArgMax does; a NaN used to sort first among the candidates and make every draw fail.
        var sampler = new Sampler(new SamplingOptions { Temperature = 1, TopK = topK, TopP = topP, Seed = 4 });
        for (var i = 0; i < 200; i++)
        {
            var token = sampler.Sample(new[] { float.NaN, 1f, 1.5f, float.NaN }, []);
            Assert.True(token is 1 or 2, $"draw {i} chose {token}");
        }

        Assert.Throws<ArgumentException>(() => sampler.Sample(new[] { float.NaN, float.NaN }, []));
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOncePerToken()
    {
        var sampler = new Sampler(SamplingOptions.Greedy with { RepetitionPenalty = 2.0 });
        var logits = new float[] { 4f, 3f, -1f, -0.4f };

        // Token 0 seen twice (penalised once), token 2 seen once.
        var chosen = sampler.Sample(logits, [0, 0, 2]);

        Assert.Equal(new float[] { 2f, 3f, -2f, -0.4f }, logits);
        Assert.Equal(1, chosen);
    }

    [Fact]
    public void TopKOfOneIsGreedyWhateverTheSeed()
    {
        for (var seed = 0; seed < 50; seed++)
        {
            var sampler = new Sampler(new SamplingOptions { Temperature = 5, TopK = 1, Seed = seed });
            Assert.Equal(3, sampler.Sample(new float[] { 1f, 2f, 0.5f, 2.5f, 2.4f }, []));
        }
    }

    [Fact]
    public void TemperatureSamplingFollowsTheSoftmaxDistribution()
    {
        var logits = new[] { MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.2f) };
        var counts = Draw(new SamplingOptions { Temperature = 1, Seed = 42 }, logits, 30000);
        Assert.InRange(counts[0] / 30000.0, 0.485, 0.515);
        Assert.InRange(counts[1] / 30000.0, 0.285, 0.315);
        Assert.InRange(counts[2] / 30000.0, 0.185, 0.215);
    }

    [Fact]
    public void LowTemperatureSharpensAndHighTemperatureFlattens()
    {
        var logits = new[] { 1f, 0f };
        var cold = Draw(new SamplingOptions { Temperature = 0.25, Seed = 1 }, logits, 20000);
        var hot = Draw(new SamplingOptions { Temperature = 4, Seed = 1 }, logits, 20000);

        // p0 = 1 / (1 + e^(-1/T)): 0.982 at T=0.25, 0.562 at T=4.
        Assert.InRange(cold[0] / 20000.0, 0.975, 0.99);
        Assert.InRange(hot[0] / 20000.0, 0.545, 0.58);
    }

    [Fact]
    public void TopPKeepsTheSmallestNucleusAndRenormalises()
    {
        var logits = new[] { MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.2f) };
        var counts = Draw(new SamplingOptions { Temperature = 1, TopP = 0.7, Seed = 7 }, logits, 30000);
        Assert.Equal(0, counts[2]);
        Assert.InRange(counts[0] / 30000.0, 0.61, 0.64); // 0.5 / 0.8
    }

    [Fact]
    public void TheSameSeedGivesTheSameDraws()
    {
        var logits = Enumerable.Range(0, 100).Select(i => MathF.Sin(i)).ToArray();
        var a = new Sampler(new SamplingOptions { Temperature = 1, Seed = 123 });
        var b = new Sampler(new SamplingOptions { Temperature = 1, Seed = 123 });
        var drawsA = Enumerable.Range(0, 50).Select(_ => a.Sample((float[])logits.Clone(), [])).ToArray();
        var drawsB = Enumerable.Range(0, 50).Select(_ => b.Sample((float[])logits.Clone(), [])).ToArray();
        Assert.Equal(drawsA, drawsB);
        Assert.True(drawsA.Distinct().Count() > 5);
    }

    [Theory]
    [InlineData(-0.1, 0, 1.0, 1.0, "Temperature")]
    [InlineData(double.NaN, 0, 1.0, 1.0, "Temperature")]
    [InlineData(1.0, -1, 1.0, 1.0, "TopK")]
    [InlineData(1.0, 0, 0.0, 1.0, "TopP")]
    [InlineData(1.0, 0, 1.5, 1.0, "TopP")]
    [InlineData(1.0, 0, 1.0, 0.0, "RepetitionPenalty")]
    public void InvalidOptionsAreRejectedByName(double temperature, int topK, double topP, double penalty, string field)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            new Sampler(new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, RepetitionPenalty = penalty }));
        Assert.Equal(field, ex.ParamName);
    }

    [Fact]
    public void EmptyOrNonFiniteLogitsAreRejected()
    {
        var sampler = new Sampler(new SamplingOptions { Temperature = 1, Seed = 1 });
        Assert.Throws<ArgumentException>(() => sampler.Sample(Span<float>.Empty, []));
        Assert.Throws<ArgumentException>(() => sampler.Sample(new[] { float.NegativeInfinity, float.NegativeInfinity }, []));
    }

    /// <summary>Top-k then top-p the plain way: sort every id by (logit descending, id ascending), same arithmetic as the sampler.</summary>
    private static int ReferenceTopKTopP(float[] logits, int k, double topP, double temperature, Random random)
    {
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(k).ToArray();
        var inverse = (double)(float)(1.0 / temperature);
        var max = order.Max(i => logits[i] * inverse);
        var p = order.Select(i => Math.Exp((logits[i] * inverse) - max)).ToArray();
        var sum = p.Sum();
        var count = p.Length;
        if (topP < 1.0)
        {
            var cumulative = 0.0;
            var keep = 0;
            while (keep < count)
            {
                cumulative += p[keep++];
                if (cumulative >= topP * sum)
                {
                    break;
                }
            }

            count = keep;
            sum = cumulative;
        }

        var draw = random.NextDouble() * sum;
        var acc = 0.0;
        for (var c = 0; c < count; c++)
        {
            acc += p[c];
            if (draw < acc)
            {
                return order[c];
            }
        }

        return order[count - 1];
    }

    [Fact]
    public void TopKSelectionDrawsExactlyAsSortingTheWholeVocabulary()
    {
        // Few distinct values, so ties at the k boundary are common: the lower id wins them.
        Prop.ForAll(
            Gen.ArrayOf(Gen.Choose(0, 6).Select(i => i * 0.5f)).Where(a => a.Length >= 2).ToArbitrary(),
            Gen.Choose(1, 6).ToArbitrary(),
            Gen.Elements(1.0, 0.8, 0.5).ToArbitrary(),
            (logits, k, topP) =>
            {
                k = Math.Min(k, logits.Length - 1);
                var options = new SamplingOptions { Temperature = 0.7, TopK = k, TopP = topP };
                var sampler = new Sampler(options, new Random(k * 31));
                var reference = new Random(k * 31);
                for (var draw = 0; draw < 5; draw++)
                {
                    Assert.Equal(ReferenceTopKTopP(logits, k, topP, 0.7, reference), sampler.Sample((float[])logits.Clone(), []));
                }
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void TopPWithoutTopKDrawsExactlyAsSortingTheWholeVocabulary()
    {
        // Flat-ish logits over up to 600 ids: the nucleus often needs more than the first 64 candidates.
        Prop.ForAll(
            Gen.Choose(2, 600).SelectMany(n => Gen.Choose(-300, 300).Select(i => i / 97f).ArrayOf(n)).ToArbitrary(),
            Gen.Elements(0.5, 0.9, 0.97, 0.999).ToArbitrary(),
            Gen.Choose(0, 1000).ToArbitrary(),
            (logits, topP, seed) =>
            {
                var sampler = new Sampler(new SamplingOptions { Temperature = 0.9, TopP = topP }, new Random(seed));
                var reference = new Random(seed);
                for (var draw = 0; draw < 5; draw++)
                {
                    Assert.Equal(ReferenceTopKTopP(logits, logits.Length, topP, 0.9, reference), sampler.Sample((float[])logits.Clone(), []));
                }
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void SampledTokensAlwaysLieInTheTopKSet()
    {
        Prop.ForAll(
            Gen.ArrayOf(Gen.Choose(-1000, 1000).Select(i => i / 100f)).Where(a => a.Length >= 2).ToArbitrary(),
            Gen.Choose(1, 5).ToArbitrary(),
            Gen.Choose(0, 10000).ToArbitrary(),
            (logits, k, seed) =>
            {
                var sampler = new Sampler(new SamplingOptions { Temperature = 1.3, TopK = k, Seed = seed });
                var token = sampler.Sample((float[])logits.Clone(), []);
                var kth = logits.OrderByDescending(x => x).ElementAt(Math.Min(k, logits.Length) - 1);
                return logits[token] >= kth;
            }).QuickCheckThrowOnFailure();
    }

    private static int[] Draw(SamplingOptions options, float[] logits, int draws)
    {
        var sampler = new Sampler(options);
        var counts = new int[logits.Length];
        for (var i = 0; i < draws; i++)
        {
            counts[sampler.Sample((float[])logits.Clone(), [])]++;
        }

        return counts;
    }
}
