using FsCheck;
using FsCheck.Fluent;
using Petals.Testing.Execution;
using Petals.Execution;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Tests.Generation;
using static Petals.Tests.Server.BlockServerTests;

namespace Petals.Tests.Server;

/// <summary>
/// A block server serves any non-empty range within its span: forward calls and sessions over a sub-range give exactly
/// the hidden states of a local executor created for those blocks, and reserve cache in proportion.
/// </summary>
public sealed class SubRangeServerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(1, 2)]
    [InlineData(2, 3)]
    [InlineData(1, 3)]
    public async Task ForwardOverARangeWithinTheSpanEqualsALocalExecutorOfThoseBlocks(int start, int end)
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var blocks = new BlockRange(start, end);
        using var local = RandomModelFixture.Factory.Create(h.Model.Weights, blocks);
        var input = h.Input(2, 6, seed: 3);
        var reply = await client.CallAsync(new ForwardRequest(blocks, WireCodec.Fp32, h.Tensor(input, 2, 6)));
        var response = Assert.IsType<ForwardResponse>(reply.Message);
        Assert.Equal(new TensorShape(2, 6, h.Hidden), response.Hidden.Shape);
        var expected = (float[])input.Clone();
        local.Forward(expected, 2, 6, null);
        Assert.Equal(expected, reply.Hidden);
        Assert.NotEqual(input, reply.Hidden);
    }

    [Fact]
    public async Task SessionsOverSubRangesEqualLocalExecutorsAndReserveCacheInProportion()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        BlockRange first = new(1, 2), second = new(2, 3);
        using var localFirst = RandomModelFixture.Factory.Create(h.Model.Weights, first);
        using var localSecond = RandomModelFixture.Factory.Create(h.Model.Weights, second);
        using var cacheFirst = localFirst.CreateCache(2, 7);
        using var cacheSecond = localSecond.CreateCache(2, 7);

        // Two sessions on one connection, chained as a client re-routing a failed span over them would: 1:2 then 2:3.
        var a = await Session.OpenAsync(client, h, maxLength: 7, first);
        var b = await Session.OpenAsync(client, h, maxLength: 7, second);
        ulong step = 0;
        var position = 0;
        foreach (var tokens in new[] { 4, 1, 1 })
        {
            step++;
            var input = h.Input(2, tokens, seed: (int)step);
            var (aPosition, aHidden) = await a.StepAsync(step, position, input, 2, tokens);
            var expected = (float[])input.Clone();
            localFirst.Forward(expected, 2, tokens, cacheFirst);
            Assert.Equal(expected, aHidden);

            var (bPosition, bHidden) = await b.StepAsync(step, position, aHidden!, 2, tokens);
            localSecond.Forward(expected, 2, tokens, cacheSecond);
            Assert.Equal(expected, bHidden);
            position += tokens;
            Assert.Equal(position, aPosition);
            Assert.Equal(position, bPosition);
        }

        // Each session runs 1 of the span's 2 blocks: ceil(2 x 7 x 1 / 2) = 7 tokens each of the whole-span budget.
        Assert.Equal(1024 - 14, h.Server.CacheTokensLeft);
        await a.CloseAsync();
        await b.CloseAsync();
        await ServerHarness.WaitUntil(() => h.Server.CacheTokensLeft == 1024 && h.Server.ActiveSessions == 0, "the sub-range sessions' caches are freed");
        Assert.Equal(14, h.Server.GetStatistics().PeakCacheTokens);
    }

    [Fact]
    public async Task ASubRangeReservationRoundsUp()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var session = await Session.OpenAsync(client, h, maxLength: 5, new BlockRange(2, 3));
        await session.StepAsync(1, 0, h.Input(1, 3, seed: 1), 1, 3);

        // ceil(1 x 5 x 1 / 2) = 3.
        Assert.Equal(1024 - 3, h.Server.CacheTokensLeft);
        await session.CloseAsync();
        await ServerHarness.WaitUntil(() => h.Server.CacheTokensLeft == 1024, "the cache is freed");
    }

    [Fact]
    public async Task RangesNotWithinTheSpanAreSpanMismatch()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        foreach (var bad in new[] { new BlockRange(0, 2), new BlockRange(2, 4), new BlockRange(0, 4), new BlockRange(3, 4), new BlockRange(0, 1) })
        {
            var forward = await client.CallAsync(new ForwardRequest(bad, WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1)));
            AssertError(forward, "span_mismatch", $"blocks {bad} requested; this server runs blocks 1:3 and serves only non-empty ranges within them");

            var id = client.Connection.NewStreamId();
            await client.Connection.SendAsync(id, new InferenceOpen(Guid.NewGuid(), bad, 8, WireCodec.Fp32), Ct);
            AssertError(await client.NextAsync(id), "span_mismatch", $"blocks {bad} requested");
        }

        Assert.Equal(0, h.Server.ActiveSessions);
        Assert.Equal(1024, h.Server.CacheTokensLeft);
        Assert.IsType<ForwardResponse>((await client.CallAsync(new ForwardRequest(new BlockRange(2, 3), WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1)))).Message);
    }

    [Fact]
    public void TheReservationIsTheCeilingOfTheSubRangesShareAndATilingIsNeverChargedLessThanTheWholeSpan()
    {
        Prop.ForAll(
            Gen.Zip(Gen.Zip(Gen.Choose(0, 50), Gen.Choose(1, 40)), Gen.Zip(Gen.Choose(1, 64), Gen.Choose(1, 4096))).ToArbitrary(),
            Gen.ListOf(Gen.Choose(1, 39)).ToArbitrary(),
            (shape, cutSeeds) =>
            {
                var ((start, count), (batch, maxLength)) = shape;
                var span = new BlockRange(start, start + count);
                var whole = (long)batch * maxLength;
                Assert.Equal(whole, BlockServer.CacheTokensForSpan(batch, maxLength, span, span));

                // Cut the span into consecutive sub-ranges at distinct points.
                var cuts = cutSeeds.Select(c => start + (c % count)).Where(c => c > start).Distinct().Order().ToList();
                var bounds = new List<int> { start };
                bounds.AddRange(cuts);
                bounds.Add(span.End);
                long total = 0;
                for (var i = 0; i + 1 < bounds.Count; i++)
                {
                    var sub = new BlockRange(bounds[i], bounds[i + 1]);
                    var tokens = BlockServer.CacheTokensForSpan(batch, maxLength, sub, span);
                    var exact = whole * sub.Count;
                    Assert.True(tokens * count >= exact && (tokens - 1) * count < exact, $"{tokens} is not ceil({whole} x {sub.Count} / {count})");
                    total += tokens;
                }

                var parts = bounds.Count - 1;
                Assert.InRange(total, whole, whole + parts - 1);
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public async Task AnExecutorThatRunsOnlyItsWholeSpanAnswersSubRangesWithUnsupported()
    {
        await using var h = await ServerHarness.StartAsync(wrap: e => new WholeSpanOnlyBlockExecutor(e));
        await using var client = await h.ConnectAsync();
        var forward = await client.CallAsync(new ForwardRequest(new BlockRange(2, 3), WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1)));
        AssertError(forward, "unsupported", "blocks 2:3 requested; this server's executor runs only its whole span 1:3");

        var session = await Session.OpenAsync(client, h, maxLength: 4, new BlockRange(1, 2));
        await session.SendStepAsync(1, 0, h.Input(1, 1, 0), 1, 1);
        AssertError(await client.NextAsync(session.StreamId), "unsupported", "blocks 1:2 requested; this server's executor runs only its whole span 1:3");
        await ServerHarness.WaitUntil(() => h.Server.CacheTokensLeft == 1024 && h.Server.ActiveSessions == 0, "the refused session is freed");

        // The whole span still works through the default members.
        Assert.IsType<ForwardResponse>((await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1)))).Message);
    }
}
