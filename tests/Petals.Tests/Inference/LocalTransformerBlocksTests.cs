using Petals.Models;
using Petals.Tensors;
using Petals.Tests.Generation;

namespace Petals.Tests.Inference;

public sealed class LocalTransformerBlocksTests
{
    [Fact]
    public async Task SplittingTheBlocksOverSeveralExecutorsGivesTheSameHiddenStates()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var whole = fixture.CreateBlocks();
        using var split = fixture.CreateBlocks(new BlockRange(0, 1), new BlockRange(1, 3), new BlockRange(3, 4));
        var h = fixture.Config.HiddenSize;
        var input = Enumerable.Range(0, 2 * 5 * h).Select(i => MathF.Sin(i * 0.37f)).ToArray();

        var a = (float[])input.Clone();
        var b = (float[])input.Clone();
        await using (var s1 = await whole.OpenSessionAsync(2, 16, TestContext.Current.CancellationToken))
        await using (var s2 = await split.OpenSessionAsync(2, 16, TestContext.Current.CancellationToken))
        {
            await s1.ForwardAsync(a, 5, TestContext.Current.CancellationToken);
            await s2.ForwardAsync(b, 5, TestContext.Current.CancellationToken);
            Assert.Equal(5, s1.Position);
            Assert.Equal(5, s2.Position);

            // One more decode step through each: caches of the split stack advance the same way.
            var stepA = a.AsSpan(0, 2 * h).ToArray();
            var stepB = (float[])stepA.Clone();
            await s1.ForwardAsync(stepA, 1, TestContext.Current.CancellationToken);
            await s2.ForwardAsync(stepB, 1, TestContext.Current.CancellationToken);
            Assert.Equal(stepA, stepB);
        }

        Assert.Equal(a, b);
        Assert.NotEqual(input, a);
    }

    [Theory]
    [InlineData(new[] { 0, 2, 3, 4 }, "starting at 2")]
    [InlineData(new[] { 0, 2, 1, 4 }, "starting at 2")]
    [InlineData(new[] { 0, 3 }, "end at block 3")]
    public void SpansThatLeaveAGapOverlapOrStopShortAreRejected(int[] bounds, string message)
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        var spans = Enumerable.Range(0, bounds.Length / 2).Select(i => new BlockRange(bounds[2 * i], bounds[(2 * i) + 1])).ToArray();
        var ex = Assert.Throws<ArgumentException>(() => fixture.CreateBlocks(spans));
        Assert.Contains(message, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASessionRefusesWrongShapesAndOverflow()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false);
        using var blocks = fixture.CreateBlocks();
        var h = fixture.Config.HiddenSize;
        await using var session = await blocks.OpenSessionAsync(1, 3, TestContext.Current.CancellationToken);

        var wrong = await Assert.ThrowsAsync<ArgumentException>(async () => await session.ForwardAsync(new float[h + 1], 1, TestContext.Current.CancellationToken));
        Assert.Contains("expected batch 1 x tokens 1 x hidden 48", wrong.Message, StringComparison.Ordinal);

        await session.ForwardAsync(new float[2 * h], 2, TestContext.Current.CancellationToken);
        var full = await Assert.ThrowsAsync<InvalidOperationException>(async () => await session.ForwardAsync(new float[2 * h], 2, TestContext.Current.CancellationToken));
        Assert.Contains("holds 2 of at most 3 positions", full.Message, StringComparison.Ordinal);
        Assert.Equal(2, session.Position);
    }
}
