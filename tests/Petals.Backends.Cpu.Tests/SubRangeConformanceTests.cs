using Petals.Testing.Execution;
using Petals.Execution;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Backends.Cpu.Tests;

/// <content>
/// Sub-ranges of an executor's span: running blocks <c>[s, e)</c> of a larger span gives exactly (bit for bit) what an
/// executor created for <c>[s, e)</c> gives, stateless and with caches; consecutive sub-ranges chain into the whole.
/// </content>
public abstract partial class BlockExecutorConformanceTests
{
    [Theory]
    [InlineData(1, 4)]
    [InlineData(0, 1)]
    [InlineData(4, 5)]
    [InlineData(2, 3)]
    [InlineData(0, 5)]
    public void SubRangeForwardEqualsAnExecutorOfThoseBlocksExactly(int start, int end)
    {
        using var model = new RandomLlama(TestConfigs.Get("gqa", layers: 5), TensorDType.BF16);
        var factory = CreateFactory();
        using var whole = factory.Create(model, new BlockRange(0, 5));
        var sub = new BlockRange(start, end);
        using var separate = factory.Create(model, sub);
        var h = model.Config.HiddenSize;

        // Stateless, small and large enough for the packed GEMM.
        foreach (var tokens in new[] { 3, 30 })
        {
            var input = Accuracy.RandomHidden(2 * tokens * h, 40 + tokens);
            var ours = (float[])input.Clone();
            var theirs = (float[])input.Clone();
            whole.Forward(ours, 2, tokens, null, sub);
            separate.Forward(theirs, 2, tokens, null);
            Assert.Equal(theirs, ours);
            Assert.NotEqual(input, ours);
        }

        // Prefill then decode, each on its own cache.
        using var ourCache = whole.CreateCache(2, 12, sub);
        using var theirCache = separate.CreateCache(2, 12);
        var prompt = Accuracy.RandomHidden(2 * 8 * h, 9);
        var ourPrompt = (float[])prompt.Clone();
        whole.Forward(ourPrompt, 2, 8, ourCache, sub);
        separate.Forward(prompt, 2, 8, theirCache);
        Assert.Equal(prompt, ourPrompt);
        for (var step = 0; step < 4; step++)
        {
            var token = Accuracy.RandomHidden(2 * h, 100 + step);
            var ourToken = (float[])token.Clone();
            whole.Forward(ourToken, 2, 1, ourCache, sub);
            separate.Forward(token, 2, 1, theirCache);
            Assert.Equal(token, ourToken);
        }

        Assert.Equal(12, ourCache.Length);
    }

    [Fact]
    public void SubRangeMatchesTheFloat64Reference()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha", layers: 4));
        using var executor = CreateFactory().Create(model, new BlockRange(0, 4));
        var h = model.Config.HiddenSize;
        var input = Accuracy.RandomHidden(5 * h, 3);
        var output = (float[])input.Clone();
        executor.Forward(output, 1, 5, null, new BlockRange(1, 3));
        Accuracy.AssertClose(output, Accuracy.Reference(model, 1, 2, input, 5), "blocks 1:3 of span 0:4");
    }

    [Fact]
    public void ChainedSubRangesEqualTheWholeRangeWithAndWithoutCaches()
    {
        using var model = new RandomLlama(TestConfigs.Get("wide", layers: 5), TensorDType.F16);
        using var executor = CreateFactory().Create(model, new BlockRange(1, 5));
        var h = model.Config.HiddenSize;
        BlockRange all = new(1, 5), left = new(1, 3), right = new(3, 5);

        var input = Accuracy.RandomHidden(2 * 6 * h, 21);
        var chained = (float[])input.Clone();
        executor.Forward(chained, 2, 6, null, left);
        executor.Forward(chained, 2, 6, null, right);
        executor.Forward(input, 2, 6, null, all);
        Assert.Equal(input, chained);

        using var wholeCache = executor.CreateCache(2, 10, all);
        using var leftCache = executor.CreateCache(2, 10, left);
        using var rightCache = executor.CreateCache(2, 10, right);
        var step = 0;
        foreach (var tokens in new[] { 7, 1, 1, 1 })
        {
            var x = Accuracy.RandomHidden(2 * tokens * h, 300 + step++);
            var y = (float[])x.Clone();
            executor.Forward(x, 2, tokens, wholeCache);
            executor.Forward(y, 2, tokens, leftCache, left);
            executor.Forward(y, 2, tokens, rightCache, right);
            Assert.Equal(x, y);
        }

        Assert.Equal(10, leftCache.Length);
        Assert.Equal(10, rightCache.Length);
    }

    [Fact]
    public void SubRangeCachesReorderAndTruncateLikeAnExecutorOfThoseBlocks()
    {
        using var model = new RandomLlama(TestConfigs.Get("gqa", layers: 3));
        var factory = CreateFactory();
        using var whole = factory.Create(model, new BlockRange(0, 3));
        var sub = new BlockRange(1, 3);
        using var separate = factory.Create(model, sub);
        var h = model.Config.HiddenSize;
        using var ours = whole.CreateCache(3, 16, sub);
        using var theirs = separate.CreateCache(3, 16);
        void Step(int tokens, int seed)
        {
            var x = Accuracy.RandomHidden(3 * tokens * h, seed);
            var y = (float[])x.Clone();
            whole.Forward(x, 3, tokens, ours, sub);
            separate.Forward(y, 3, tokens, theirs);
            Assert.Equal(y, x);
        }

        Step(5, 1);
        Step(1, 2);
        ours.Reorder([2, 0, 0]);
        theirs.Reorder([2, 0, 0]);
        Step(1, 3);
        ours.Truncate(4);
        theirs.Truncate(4);
        Step(2, 4);
        Assert.Equal(6, ours.Length);
    }

    [Fact]
    public void BadSubRangesAreRejectedPrecisely()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha", layers: 6));
        using var executor = CreateFactory().Create(model, new BlockRange(1, 5));
        var hidden = new float[model.Config.HiddenSize];
        foreach (var bad in new[] { new BlockRange(0, 3), new BlockRange(4, 6), new BlockRange(0, 6), new BlockRange(5, 6), default })
        {
            var forward = Assert.Throws<ArgumentOutOfRangeException>(() => executor.Forward(hidden, 1, 1, null, bad));
            Assert.Equal("blocks", forward.ParamName);
            Assert.Contains($"Blocks {bad} are not a non-empty range within this executor's span 1:5", forward.Message, StringComparison.Ordinal);
            var create = Assert.Throws<ArgumentOutOfRangeException>(() => executor.CreateCache(1, 4, bad));
            Assert.Equal("blocks", create.ParamName);
            Assert.Contains("1:5", create.Message, StringComparison.Ordinal);
        }

        using var leftCache = executor.CreateCache(1, 4, new BlockRange(1, 3));
        var other = Assert.Throws<ArgumentException>(() => executor.Forward(hidden, 1, 1, leftCache, new BlockRange(3, 5)));
        Assert.Equal("cache", other.ParamName);
        Assert.Contains("The cache holds blocks 1:3; it cannot be used to run blocks 3:5", other.Message, StringComparison.Ordinal);
        var whole = Assert.Throws<ArgumentException>(() => executor.Forward(hidden, 1, 1, leftCache));
        Assert.Contains("The cache holds blocks 1:3; it cannot be used to run blocks 1:5", whole.Message, StringComparison.Ordinal);
        using var wholeCache = executor.CreateCache(1, 4);
        var narrower = Assert.Throws<ArgumentException>(() => executor.Forward(hidden, 1, 1, wholeCache, new BlockRange(1, 3)));
        Assert.Contains("The cache holds blocks 1:5", narrower.Message, StringComparison.Ordinal);
        Assert.Equal(0, leftCache.Length);
        Assert.Equal(0, wholeCache.Length);
        executor.Forward(hidden, 1, 1, leftCache, new BlockRange(1, 3));
        Assert.Equal(1, leftCache.Length);
    }
}

/// <summary>The default sub-range members of <see cref="IBlockExecutor"/>: whole span only, a precise refusal otherwise.</summary>
public sealed class DefaultSubRangeMembersTests
{
    [Fact]
    public void AnExecutorWithoutSubRangeSupportRunsItsWholeSpanAndRefusesProperSubRanges()
    {
        using var model = new RandomLlama(TestConfigs.Get("mha", layers: 3));
        using var cpu = ExecutorChecks.Managed(1).Create(model, new BlockRange(0, 3));
        IBlockExecutor executor = new WholeSpanOnlyBlockExecutor(cpu, ownsInner: false);
        var h = model.Config.HiddenSize;
        var input = Accuracy.RandomHidden(2 * h, 8);
        var viaDefault = (float[])input.Clone();
        executor.Forward(viaDefault, 1, 2, null, new BlockRange(0, 3));
        cpu.Forward(input, 1, 2, null);
        Assert.Equal(input, viaDefault);
        using (var cache = executor.CreateCache(1, 4, new BlockRange(0, 3)))
        {
            executor.Forward(viaDefault, 1, 2, cache, new BlockRange(0, 3));
            Assert.Equal(2, cache.Length);
        }

        var notSupported = Assert.Throws<NotSupportedException>(() => executor.Forward(new float[h], 1, 1, null, new BlockRange(1, 3)));
        Assert.Contains("runs only its whole span 0:3, not the sub-range 1:3", notSupported.Message, StringComparison.Ordinal);
        Assert.Throws<NotSupportedException>(() => executor.CreateCache(1, 4, new BlockRange(0, 1)));
        var outside = Assert.Throws<ArgumentOutOfRangeException>(() => executor.CreateCache(1, 4, new BlockRange(2, 4)));
        Assert.Equal("blocks", outside.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => executor.Forward(new float[h], 1, 1, null, default));
    }
}
