using Petals.Execution;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests;

/// <summary>
/// The conformance suite of <see cref="IBlockExecutorFactory"/> implementations against the float64 reference:
/// prefill, decode, batches, spans, dtypes, rope scaling, cache operations. Each backend configuration subclasses it.
/// </summary>
public abstract partial class BlockExecutorConformanceTests
{
    /// <summary>The factory under test; may call <c>Assert.Skip</c> when the backend is unavailable here.</summary>
    protected abstract IBlockExecutorFactory CreateFactory();

    [Theory]
    [InlineData("mha", TensorDType.F32)]
    [InlineData("gqa", TensorDType.F32)]
    [InlineData("odd", TensorDType.F32)]
    [InlineData("wide", TensorDType.F32)]
    [InlineData("llama3", TensorDType.F32)]
    [InlineData("mha", TensorDType.BF16)]
    [InlineData("gqa", TensorDType.F16)]
    [InlineData("wide", TensorDType.BF16)]
    [InlineData("odd", TensorDType.F16)]
    public void StatelessPrefillMatchesReference(string configName, TensorDType dtype)
    {
        using var model = new RandomLlama(TestConfigs.Get(configName), dtype);
        using var executor = CreateFactory().Create(model, new BlockRange(0, 2));
        ExecutorChecks.RunStatelessAndCompare(model, executor, batch: 2, tokens: 9, seed: 7);
    }

    [Theory]
    [InlineData("mha", TensorDType.F32, 2, 20)]
    [InlineData("gqa", TensorDType.BF16, 3, 33)]
    [InlineData("odd", TensorDType.F16, 1, 70)]
    [InlineData("wide", TensorDType.F16, 2, 24)]
    [InlineData("llama3", TensorDType.BF16, 1, 40)]
    public void LongPrefillThroughThePackedGemmMatchesReference(string configName, TensorDType dtype, int batch, int tokens)
    {
        using var model = new RandomLlama(TestConfigs.Get(configName), dtype);
        using var executor = CreateFactory().Create(model, new BlockRange(0, 2));
        ExecutorChecks.RunStatelessAndCompare(model, executor, batch, tokens, seed: 17);
        ExecutorChecks.RunCachedAndCompare(model, executor, batch, prefill: tokens, chunk: tokens, decode: 2, seed: 18);
    }

    [Theory]
    [InlineData(TensorDType.BF16)]
    [InlineData(TensorDType.F32)]
    [InlineData(TensorDType.F16)]
    public void WideMlpCrossesKernelBlockBoundaries(TensorDType dtype)
    {
        // intermediate 4200 > the kernels' K blocks (2048 streaming, 4096 packed), so down_proj accumulates over several blocks.
        using var model = new RandomLlama(TestConfigs.Get("deep", layers: 1), dtype);
        using var executor = CreateFactory().Create(model, new BlockRange(0, 1));
        ExecutorChecks.RunCachedAndCompare(model, executor, batch: 1, prefill: 26, chunk: 26, decode: 2, seed: 77);
        ExecutorChecks.RunStatelessAndCompare(model, executor, batch: 2, tokens: 5, seed: 78);
    }

    [Theory]
    [InlineData("mha", TensorDType.F32)]
    [InlineData("gqa", TensorDType.BF16)]
    [InlineData("odd", TensorDType.F16)]
    [InlineData("llama3", TensorDType.F32)]
    [InlineData("wide", TensorDType.F32)]
    public void CachedPrefillThenDecodeMatchesPrefillOfWholeSequence(string configName, TensorDType dtype)
    {
        using var model = new RandomLlama(TestConfigs.Get(configName), dtype);
        using var executor = CreateFactory().Create(model, new BlockRange(0, 2));
        ExecutorChecks.RunCachedAndCompare(model, executor, batch: 3, prefill: 6, chunk: 2, decode: 4, seed: 11);
    }

    [Fact]
    public void SpanOfSeveralBlocksLoadsOnlyItsTensorsAndMatchesReference()
    {
        using var model = new RandomLlama(TestConfigs.Get("gqa", layers: 5), TensorDType.BF16);
        using var executor = CreateFactory().Create(model, new BlockRange(1, 4));
        Assert.Equal(new BlockRange(1, 4), executor.Blocks);
        foreach (var name in model.Requests.Keys)
        {
            Assert.True(name.StartsWith("model.layers.1.", StringComparison.Ordinal)
                || name.StartsWith("model.layers.2.", StringComparison.Ordinal)
                || name.StartsWith("model.layers.3.", StringComparison.Ordinal), name);
        }

        Assert.Equal(3 * LlamaTensorNames.BlockTensors.Count, model.Requests.Count);
        ExecutorChecks.RunStatelessAndCompare(model, executor, batch: 1, tokens: 5, seed: 3);
        ExecutorChecks.RunCachedAndCompare(model, executor, batch: 2, prefill: 4, chunk: 4, decode: 2, seed: 5);
    }

    [Fact]
    public void StatelessAndCachedPrefillAgree()
    {
        using var model = new RandomLlama(TestConfigs.Get("gqa"));
        using var executor = CreateFactory().Create(model, new BlockRange(0, 2));
        var h = model.Config.HiddenSize;
        var input = Accuracy.RandomHidden(2 * 5 * h, 99);
        var a = (float[])input.Clone();
        executor.Forward(a, 2, 5, null);
        using var cache = executor.CreateCache(2, 8);
        var b = (float[])input.Clone();
        executor.Forward(b, 2, 5, cache);
        Assert.Equal(5, cache.Length);
        for (var i = 0; i < a.Length; i++)
        {
            Assert.True(Math.Abs(a[i] - b[i]) <= 1e-6f * Math.Max(1, Math.Abs(a[i])), $"element {i}: {a[i]} vs {b[i]}");
        }
    }

    [Fact]
    public void ReorderMakesRowsCopiesOfTheChosenHypotheses()
    {
        using var model = new RandomLlama(TestConfigs.Get("gqa"));
        using var executor = CreateFactory().Create(model, new BlockRange(0, 2));
        var h = model.Config.HiddenSize;
        const int Batch = 3, Prefill = 4;
        var history = Accuracy.RandomHidden(Batch * Prefill * h, 21);
        using var cache = executor.CreateCache(Batch, 8);
        executor.Forward((float[])history.Clone(), Batch, Prefill, cache);
        int[] hypo = [2, 0, 2];
        cache.Reorder(hypo);
        var step = Accuracy.RandomHidden(Batch * h, 22);
        var output = (float[])step.Clone();
        executor.Forward(output, Batch, 1, cache);
        for (var b = 0; b < Batch; b++)
        {
            var sequence = new float[(Prefill + 1) * h];
            history.AsSpan(hypo[b] * Prefill * h, Prefill * h).CopyTo(sequence);
            step.AsSpan(b * h, h).CopyTo(sequence.AsSpan(Prefill * h));
            var expected = Accuracy.Reference(model, 0, 2, sequence, Prefill + 1);
            Accuracy.AssertClose(output.AsSpan(b * h, h), expected.AsSpan(Prefill * h, h), $"row {b} after reorder");
        }
    }

    [Theory]
    [InlineData(TensorDType.F32)]
    [InlineData(TensorDType.BF16)]
    public void BeamSearchLikeSequenceOfReordersAndDecodesMatchesReference(TensorDType dtype)
    {
        using var model = new RandomLlama(TestConfigs.Get("llama3"), dtype);
        using var executor = CreateFactory().Create(model, new BlockRange(0, 2));
        var h = model.Config.HiddenSize;
        const int Batch = 4;
        var histories = Enumerable.Range(0, Batch).Select(_ => new List<float>()).ToArray();
        using var cache = executor.CreateCache(Batch, 16);
        var prompt = Accuracy.RandomHidden(Batch * 3 * h, 50);
        executor.Forward((float[])prompt.Clone(), Batch, 3, cache);
        for (var b = 0; b < Batch; b++)
        {
            histories[b].AddRange(prompt.AsSpan(b * 3 * h, 3 * h).ToArray());
        }

        int[][] reorders = [[3, 3, 1, 0], [0, 1, 2, 3], [2, 2, 2, 2], [1, 0, 3, 2]];
        for (var step = 0; step < reorders.Length; step++)
        {
            cache.Reorder(reorders[step]);
            histories = reorders[step].Select(src => new List<float>(histories[src])).ToArray();
            var input = Accuracy.RandomHidden(Batch * h, 60 + step);
            var output = (float[])input.Clone();
            executor.Forward(output, Batch, 1, cache);
            for (var b = 0; b < Batch; b++)
            {
                histories[b].AddRange(input.AsSpan(b * h, h).ToArray());
                var length = histories[b].Count / h;
                var expected = Accuracy.Reference(model, 0, 2, histories[b].ToArray(), length);
                Accuracy.AssertClose(output.AsSpan(b * h, h), expected.AsSpan((length - 1) * h, h), $"step {step}, row {b}");
            }
        }
    }

    [Fact]
    public void TruncateRollsBackSoNewTokensFollowTheKeptPrefix()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha"), TensorDType.BF16);
        using var executor = CreateFactory().Create(model, new BlockRange(0, 2));
        var h = model.Config.HiddenSize;
        var first = Accuracy.RandomHidden(6 * h, 31);
        using var cache = executor.CreateCache(1, 10);
        executor.Forward((float[])first.Clone(), 1, 6, cache);
        cache.Truncate(3);
        Assert.Equal(3, cache.Length);
        var next = Accuracy.RandomHidden(2 * h, 32);
        var output = (float[])next.Clone();
        executor.Forward(output, 1, 2, cache);
        Assert.Equal(5, cache.Length);
        var sequence = new float[5 * h];
        first.AsSpan(0, 3 * h).CopyTo(sequence);
        next.CopyTo(sequence.AsSpan(3 * h));
        var expected = Accuracy.Reference(model, 0, 2, sequence, 5);
        Accuracy.AssertClose(output, expected.AsSpan(3 * h), "after truncate");
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(6));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(-1));
        cache.Truncate(0);
        Assert.Equal(0, cache.Length);
    }

    [Fact]
    public void ConcurrentSessionsOnDifferentCachesGiveTheSameResultsAsSequentialOnes()
    {
        using var model = new RandomLlama(TestConfigs.Get("gqa"));
        using var executor = CreateFactory().Create(model, new BlockRange(0, 2));
        var h = model.Config.HiddenSize;
        var inputs = Enumerable.Range(0, 4).Select(i => Accuracy.RandomHidden(3 * h, 100 + i)).ToArray();
        var sequential = inputs.Select(x =>
        {
            var y = (float[])x.Clone();
            executor.Forward(y, 1, 3, null);
            return y;
        }).ToArray();
        var parallel = inputs.Select(x => (float[])x.Clone()).ToArray();
        Parallel.For(0, inputs.Length, i =>
        {
            using var cache = executor.CreateCache(1, 3);
            executor.Forward(parallel[i], 1, 3, cache);
        });
        for (var i = 0; i < inputs.Length; i++)
        {
            Assert.Equal(sequential[i], parallel[i]);
        }
    }
}
