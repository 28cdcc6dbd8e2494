using Petals.Generation;
using Petals.Models;
using Petals.Numerics;
using Petals.Tensors;

namespace Petals.Tests.Generation;

public sealed class CausalLanguageModelTests
{
    [Theory]
    [InlineData(TensorDType.F32, false)]
    [InlineData(TensorDType.BF16, false)]
    [InlineData(TensorDType.F16, true)]
    public async Task CachedGenerationEqualsRecomputingTheWholePrefixEveryStep(TensorDType dtype, bool tied)
    {
        using var fixture = new RandomModelFixture(dtype, tied);
        using var model = fixture.CreateModel(new BlockRange(0, 2), new BlockRange(2, 4));
        int[] prompt = [1, 5, 17, 33];
        var options = new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] };

        var generated = await model.GenerateAsync(prompt, options, TestContext.Current.CancellationToken).ToArrayAsync(TestContext.Current.CancellationToken);

        Assert.Equal(12, generated.Length);
        var sequence = new List<int>(prompt);
        var h = fixture.Config.HiddenSize;
        var logits = new float[fixture.Config.VocabSize];
        foreach (var expectedToken in generated)
        {
            // No cache reuse: a fresh session over the whole prefix.
            var hidden = new float[sequence.Count * h];
            model.Head.Embed(sequence.ToArray(), hidden);
            await using (var session = await model.Blocks.OpenSessionAsync(1, sequence.Count, TestContext.Current.CancellationToken))
            {
                await session.ForwardAsync(hidden, sequence.Count, TestContext.Current.CancellationToken);
            }

            model.Head.ComputeLogits(hidden.AsSpan((sequence.Count - 1) * h, h), logits, new float[h]);
            Assert.Equal(Sampler.ArgMax(logits), expectedToken);
            sequence.Add(expectedToken);
        }
    }

    [Fact]
    public async Task GenerationStopsAfterAStopTokenAndReturnsIt()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel();
        int[] prompt = [1, 9, 4];
        var free = await model.GenerateAsync(prompt, new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [] }, TestContext.Current.CancellationToken)
            .ToArrayAsync(TestContext.Current.CancellationToken);
        var stop = free[3];
        var firstIndex = Array.IndexOf(free, stop);

        var stopped = await model.GenerateAsync(prompt, new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [stop] }, TestContext.Current.CancellationToken)
            .ToArrayAsync(TestContext.Current.CancellationToken);

        Assert.Equal(free.Take(firstIndex + 1), stopped);
    }

    [Fact]
    public async Task CancellationStopsGenerationPromptly()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel();
        using var cts = new CancellationTokenSource();
        var count = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in model.GenerateAsync([1, 2, 3], new GenerationOptions { MaxNewTokens = 100, StopTokenIds = [] }, cts.Token))
            {
                if (++count == 3)
                {
                    await cts.CancelAsync();
                }
            }
        });
        Assert.Equal(3, count);
    }

    [Fact]
    public async Task BadPromptsAreRejectedBeforeAnyWork()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel();
        await Assert.ThrowsAsync<ArgumentException>(async () => await model.GenerateAsync([], null, TestContext.Current.CancellationToken).ToArrayAsync(TestContext.Current.CancellationToken));
        var ex = await Assert.ThrowsAsync<ArgumentException>(async () => await model.GenerateAsync([1, 97], null, TestContext.Current.CancellationToken).ToArrayAsync(TestContext.Current.CancellationToken));
        Assert.Contains("97", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => model.ComputeNegativeLogLikelihoodAsync([1], TestContext.Current.CancellationToken));
        Assert.Throws<InvalidOperationException>(() => model.EncodePrompt("text without a tokenizer"));
    }

    [Fact]
    public async Task SequencesLongerThanTheContextAreRejectedWithBothNumbers()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var model = fixture.CreateModel();
        var context = fixture.Config.MaxPositionEmbeddings;
        var ex = await Assert.ThrowsAsync<ArgumentException>(async () =>
            await model.GenerateAsync([1, 2, 3], new GenerationOptions { MaxNewTokens = context - 2 }, TestContext.Current.CancellationToken).ToArrayAsync(TestContext.Current.CancellationToken));
        Assert.Contains($"needs {context + 1} positions", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"context of {context}", ex.Message, StringComparison.Ordinal);

        var tooLong = Enumerable.Repeat(5, context + 1).ToArray();
        await Assert.ThrowsAsync<ArgumentException>(() => model.ComputeNegativeLogLikelihoodAsync(tooLong, TestContext.Current.CancellationToken));

        // Exactly the context is fine.
        var generated = await model.GenerateAsync([1, 2, 3], new GenerationOptions { MaxNewTokens = context - 3, StopTokenIds = [] }, TestContext.Current.CancellationToken)
            .ToArrayAsync(TestContext.Current.CancellationToken);
        Assert.Equal(context - 3, generated.Length);
    }

    [Fact]
    public async Task NllEqualsTheMeanOfLogSoftmaxOverTeacherForcedPositions()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: true);
        using var model = fixture.CreateModel();
        int[] ids = [1, 40, 41, 7, 7, 90, 3];
        var h = fixture.Config.HiddenSize;
        var hidden = new float[ids.Length * h];
        model.Head.Embed(ids, hidden);
        await using (var session = await model.Blocks.OpenSessionAsync(1, ids.Length, TestContext.Current.CancellationToken))
        {
            await session.ForwardAsync(hidden, ids.Length, TestContext.Current.CancellationToken);
        }

        var expected = 0.0;
        var logits = new float[fixture.Config.VocabSize];
        for (var t = 0; t < ids.Length - 1; t++)
        {
            model.Head.ComputeLogits(hidden.AsSpan(t * h, h), logits, new float[h]);
            var max = logits.Max();
            var logSum = Math.Log(logits.Sum(l => Math.Exp(l - max))) + max;
            expected += logSum - logits[ids[t + 1]];
        }

        var nll = await model.ComputeNegativeLogLikelihoodAsync(ids, TestContext.Current.CancellationToken);
        // fp32 activations: the block outputs for a 6- and a 7-token pass may round differently in the last bit.
        Assert.Equal(expected / (ids.Length - 1), nll.MeanNll, 1e-6);
        Assert.Equal(6, nll.PredictedTokens);
        Assert.Equal(Math.Exp(nll.MeanNll), nll.Perplexity, 1e-12);
    }

    [Fact]
    public void LoadLocalDisposesTheExecutorWhenTheModelCannotBeAssembled()
    {
        using var dir = Petals.Testing.TestData.CreateTempDirectory();
        var config = new ModelConfig
        {
            HiddenSize = 16, IntermediateSize = 32, NumLayers = 2, NumHeads = 2, NumKeyValueHeads = 2, HeadDim = 8,
            VocabSize = 4, RmsNormEps = 1e-5, MaxPositionEmbeddings = 32, BosTokenId = 1, EosTokenIds = [2],
        };
        Petals.Tests.Formats.RandomModels.Write(dir.Path, config, TensorDType.F32, seed: 3);
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.json"), """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "d": 3}, "merges": []}}""");
        var factory = new ShortSpanFactory();

        // The executor covers one block of two, so the local stack rejects it after it was created.
        Assert.Throws<ArgumentException>(() => CausalLanguageModel.LoadLocal(dir.Path, factory));
        Assert.NotNull(factory.Created);
        Assert.Throws<ObjectDisposedException>(() => factory.Created.CreateCache(1, 1));
    }

    private sealed class ShortSpanFactory : Petals.Execution.IBlockExecutorFactory
    {
        public Petals.Execution.IBlockExecutor? Created { get; private set; }

        public string Name => "short span";

        public Petals.Execution.IBlockExecutor Create(IModelWeights weights, BlockRange blocks) =>
            Created = RandomModelFixture.Factory.Create(weights, new BlockRange(blocks.Start, blocks.End - 1));
    }
}
