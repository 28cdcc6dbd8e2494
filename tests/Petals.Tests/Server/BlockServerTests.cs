using Petals.Testing.Execution;
using Petals.Protocol;
using Petals.Server;
using Petals.Testing.Time;
using Petals.Transport.Tcp;

namespace Petals.Tests.Server;

public sealed class BlockServerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task InfoDescribesTheSpanTheBudgetAndTheLimits()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var info = Assert.IsType<InfoResponse>((await client.CallAsync(InfoRequest.Instance)).Message);
        Assert.Equal(ServerHarness.ModelId, info.ModelId);
        Assert.Equal(ServerHarness.Span, info.Blocks);
        Assert.Equal(1024ul, info.CacheTokensLeft);
        Assert.Equal(128, info.MaxSessionLength);
        Assert.Equal(256, info.MaxBatchSize);
        Assert.Equal(WireCodecs.All, info.Codecs);
        Assert.Equal(h.Hidden, info.HiddenSize);
        Assert.Equal(ConnectionPreamble.CurrentVersionMajor, info.VersionMajor);
    }

    [Fact]
    public async Task APingOnAStreamIsAnsweredWithItsNonce()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var pong = Assert.IsType<PongMessage>((await client.CallAsync(new PingMessage(0xDEADBEEF12345678))).Message);
        Assert.Equal(0xDEADBEEF12345678, pong.Nonce);
    }

    [Theory]
    [InlineData(WireCodec.Fp32)]
    [InlineData(WireCodec.Bf16)]
    public async Task AForwardEqualsTheExecutorsOwnForward(WireCodec replyCodec)
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var input = h.Input(2, 7, seed: 3);
        var reply = await client.CallAsync(new ForwardRequest(ServerHarness.Span, replyCodec, h.Tensor(input, 2, 7)));
        Assert.IsType<ForwardResponse>(reply.Message);

        var expected = (float[])input.Clone();
        h.Reference.Forward(expected, 2, 7, cache: null);
        var encoded = WireTensor.FromValues(new TensorShape(2, 7, h.Hidden), expected, replyCodec).ToArrayRoundTrip();
        Assert.Equal(encoded, reply.Hidden);
        Assert.NotEqual(input, reply.Hidden);
        Assert.Equal(1, h.Server.GetStatistics().ForwardCalls);
        Assert.Equal(14, h.Server.GetStatistics().TokensProcessed);
    }

    [Fact]
    public async Task BadForwardsGetPreciseErrorsAndTheConnectionKeepsServing()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();

        var wrongSpan = await client.CallAsync(new ForwardRequest(new Models.BlockRange(0, 3), WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1)));
        AssertError(wrongSpan, "span_mismatch", "blocks 0:3 requested; this server runs blocks 1:3 and serves only non-empty ranges within them");

        var tooBig = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(3, 100, 0), 3, 100)));
        AssertError(tooBig, "request_too_large", "carry 300 batch x tokens, above this server's limit of 256");

        var wrongHidden = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32,
            WireTensor.FromValues(new TensorShape(1, 1, h.Hidden + 1), new float[h.Hidden + 1])));
        AssertError(wrongHidden, "bad_shape", $"hidden size {h.Hidden + 1}, the model's is {h.Hidden}");

        var prompts = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1),
            WireTensor.FromValues(new TensorShape(2, 1, 2, h.Hidden), new float[4 * h.Hidden])));
        AssertError(prompts, "bad_shape", $"deep prompts [2, 1, 2, {h.Hidden}] cover 2 positions but the call has only 1 tokens per sequence");

        Assert.IsType<InfoResponse>((await client.CallAsync(InfoRequest.Instance)).Message);
    }

    [Fact]
    public async Task CodecsTheServerDoesNotAcceptAreBadDType()
    {
        await using var h = await ServerHarness.StartAsync(o => o.Codecs = WireCodecs.Fp32 | WireCodecs.Fp16);
        await using var client = await h.ConnectAsync();
        var reply = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Bf16, h.Tensor(h.Input(1, 1, 0), 1, 1)));
        AssertError(reply, "bad_dtype", "the reply codec Bf16 is not accepted");
        var input = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1, WireCodec.Bf16)));
        AssertError(input, "bad_dtype", "the hidden states codec Bf16 is not accepted");
        var fp16 = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp16, h.Tensor(h.Input(1, 2, 0), 1, 2, WireCodec.Fp16)));
        Assert.IsType<ForwardResponse>(fp16.Message);
    }

    [Fact]
    public async Task AnInferenceSessionMatchesTheLocalExecutorTokenByToken()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var session = await Session.OpenAsync(client, h, maxLength: 32);
        using var cache = h.Reference.CreateCache(1, 32);

        ulong step = 0;
        var prefill = h.Input(1, 5, seed: 1);
        var result = await session.StepAsync(++step, 0, prefill, 1, 5);
        Assert.Equal(5, result.Position);
        Assert.Equal(Local(h, cache, prefill, 1, 5), result.Hidden);

        for (var t = 0; t < 4; t++)
        {
            var token = h.Input(1, 1, seed: 10 + t);
            result = await session.StepAsync(++step, 5 + t, token, 1, 1);
            Assert.Equal(6 + t, result.Position);
            Assert.Equal(Local(h, cache, token, 1, 1), result.Hidden);
        }

        Assert.Equal(1024 - 32, h.Server.CacheTokensLeft);
        await session.CloseAsync();
        await ServerHarness.WaitUntil(() => h.Server.CacheTokensLeft == 1024 && h.Server.ActiveSessions == 0, "the closed session's cache is freed");
        var stats = h.Server.GetStatistics();
        Assert.Equal(5, stats.InferenceSteps);
        Assert.Equal(9, stats.TokensProcessed);
        Assert.Equal(1, stats.SessionsOpened);
        Assert.Equal(32, stats.PeakCacheTokens);
    }

    [Fact]
    public async Task RollingBackByStartPositionReproducesTheSameOutputs()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var session = await Session.OpenAsync(client, h, maxLength: 16);
        var tokens = Enumerable.Range(0, 6).Select(i => h.Input(1, 1, seed: 20 + i)).ToArray();
        var first = new List<float[]>();
        for (var i = 0; i < tokens.Length; i++)
        {
            first.Add((await session.StepAsync((ulong)i + 1, i, tokens[i], 1, 1)).Hidden!);
        }

        // Back to position 3: positions 3.. are recomputed and must come out the same.
        for (var i = 3; i < tokens.Length; i++)
        {
            var again = await session.StepAsync((ulong)i + 100, i, tokens[i], 1, 1);
            Assert.Equal(i + 1, again.Position);
            Assert.Equal(first[i], again.Hidden);
        }

        // A different token at position 2 gives a different continuation than before.
        var other = await session.StepAsync(200, 2, h.Input(1, 1, seed: 99), 1, 1);
        Assert.Equal(3, other.Position);
        Assert.NotEqual(first[2], other.Hidden);
    }

    [Fact]
    public async Task HypoIdsReorderTheCacheRowsLikeReorderingLocally()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var session = await Session.OpenAsync(client, h, maxLength: 16);
        using var cache = h.Reference.CreateCache(3, 16);
        var prefill = h.Input(3, 4, seed: 5);
        Assert.Equal(Local(h, cache, prefill, 3, 4), (await session.StepAsync(1, 0, prefill, 3, 4)).Hidden);

        int[] hypo = [2, 2, 0];
        var token = h.Input(3, 1, seed: 6);
        var result = await session.StepAsync(2, 4, token, 3, 1, hypo);
        cache.Reorder(hypo);
        Assert.Equal(Local(h, cache, token, 3, 1), result.Hidden);
        Assert.Equal(5, result.Position);
    }

    [Fact]
    public async Task ARepeatedLastStepIsResentNotReappliedAndAnOlderOneIsADuplicate()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var session = await Session.OpenAsync(client, h, maxLength: 16);
        await session.StepAsync(1, 0, h.Input(1, 3, seed: 1), 1, 3);
        var second = await session.StepAsync(2, 3, h.Input(1, 1, seed: 2), 1, 1);

        var resent = await session.StepAsync(2, 3, h.Input(1, 1, seed: 2), 1, 1);
        Assert.Equal(second.Position, resent.Position);
        Assert.Equal(second.Hidden, resent.Hidden);
        Assert.Equal(2, h.Server.GetStatistics().InferenceSteps);

        await session.SendStepAsync(1, 0, h.Input(1, 3, seed: 1), 1, 3);
        AssertError(await client.NextAsync(session.StreamId), "duplicate_step", "step 1 was already applied and is not the last step (2)");
        await ServerHarness.WaitUntil(() => h.Server.CacheTokensLeft == 1024, "the failed session's cache is freed");
    }

    [Fact]
    public async Task AStepPastTheCacheIsBadPositionAndAHypoIdOutsideTheBatchIsBadHypoIds()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var a = await Session.OpenAsync(client, h, maxLength: 16);
        await a.StepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);
        await a.SendStepAsync(2, 3, h.Input(1, 1, seed: 1), 1, 1);
        AssertError(await client.NextAsync(a.StreamId), "bad_position", "starts at position 3 but the session cache holds 2 tokens");

        var b = await Session.OpenAsync(client, h, maxLength: 16);
        await b.StepAsync(1, 0, h.Input(2, 2, seed: 1), 2, 2);
        await b.SendStepAsync(2, 2, h.Input(2, 1, seed: 1), 2, 1, [0, 2]);
        AssertError(await client.NextAsync(b.StreamId), "bad_hypo_ids", "hypo id 2 at index 1 is outside the batch [0, 2)");

        var c = await Session.OpenAsync(client, h, maxLength: 4);
        await c.SendStepAsync(1, 0, h.Input(1, 5, seed: 1), 1, 5);
        AssertError(await client.NextAsync(c.StreamId), "bad_position", "past the session's max length 4");

        await ServerHarness.WaitUntil(() => h.Server.CacheTokensLeft == 1024 && h.Server.ActiveSessions == 0, "failed sessions free their caches");
        Assert.IsType<InfoResponse>((await client.CallAsync(InfoRequest.Instance)).Message);
    }

    [Fact]
    public async Task PipeliningStepsAreAnsweredInOrderAndAFloodIsBusy()
    {
        await using var h = await ServerHarness.StartAsync(o => (o.CacheTokens, o.MaxCacheShare) = (100, 1)); // one client holds and waits: no per-peer share
        await using var client = await h.ConnectAsync();
        using var cache = h.Reference.CreateCache(1, 80);

        // Five steps sent back to back (the first waits for nothing, the rest queue behind it): results come in order.
        var session = await Session.OpenAsync(client, h, maxLength: 80);
        var tokens = Enumerable.Range(0, 5).Select(i => h.Input(1, 1, seed: 40 + i)).ToArray();
        for (var i = 0; i < tokens.Length; i++)
        {
            await session.SendStepAsync((ulong)i + 1, i, tokens[i], 1, 1);
        }

        for (var i = 0; i < tokens.Length; i++)
        {
            var result = await client.NextAsync(session.StreamId);
            var step = Assert.IsType<InferenceStepResult>(result.Message);
            Assert.Equal((ulong)i + 1, step.StepId);
            Assert.Equal(Local(h, cache, tokens[i], 1, 1), result.Hidden);
        }

        // A second session that waits for cache while its client floods it with steps: the excess is refused with busy.
        var flooded = await Session.OpenAsync(client, h, maxLength: 70);
        for (var i = 0; i <= InferenceSession.MaxQueuedSteps; i++)
        {
            await flooded.SendStepAsync((ulong)i + 1, i, tokens[0], 1, 1);
        }

        await ServerHarness.WaitUntil(() => h.Server.Budget.Waiting == 1, "the flooded session waits for cache");
        await session.CloseAsync();

        // The queued steps run once the cache frees up; the step past the limit ends the session with busy.
        for (var i = 0; i < InferenceSession.MaxQueuedSteps; i++)
        {
            Assert.Equal((ulong)i + 1, Assert.IsType<InferenceStepResult>((await client.NextAsync(flooded.StreamId)).Message).StepId);
        }

        AssertError(await client.NextAsync(flooded.StreamId), "busy", $"more than {InferenceSession.MaxQueuedSteps} steps");
        await ServerHarness.WaitUntil(() => h.Server.CacheTokensLeft == 100 && h.Server.ActiveSessions == 0, "every cache is freed");
    }

    [Fact]
    public async Task InputsWaitingForComputationAreBoundedByTheQueuedInputBudget()
    {
        var stepBytes = 0L;
        await using var h = await ServerHarness.StartAsync(o => (o.CacheTokens, o.MaxCacheShare) = (100, 1)); // one client holds and waits: no per-peer share
        stepBytes = (long)h.Hidden * sizeof(float);
        h.Server.Options.MaxQueuedInputBytes = 3 * stepBytes;
        await using var client = await h.ConnectAsync();

        // Session A holds most of the cache, so session B's steps queue (holding their inputs) while B waits for cache.
        var a = await Session.OpenAsync(client, h, maxLength: 80);
        await a.StepAsync(1, 0, h.Input(1, 1, seed: 1), 1, 1);
        var b = await Session.OpenAsync(client, h, maxLength: 70);
        for (var i = 0; i < 4; i++)
        {
            await b.SendStepAsync((ulong)i + 1, i, h.Input(1, 1, seed: 10 + i), 1, 1);
        }

        await ServerHarness.WaitUntil(() => h.Server.Budget.Waiting == 1, "session B waits for cache");
        await ServerHarness.WaitUntil(() => h.Server.QueuedInputBytes == 3 * stepBytes, "three steps' inputs are held");

        // The budget is server-wide: a forward from another client is refused too, with the figures.
        await using var other = await h.ConnectAsync();
        var forward = await other.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, WireTensor.FromValues(new TensorShape(1, 1, h.Hidden), h.Input(1, 1, seed: 3))));
        AssertError(forward, "busy", $"already holds {3 * stepBytes} bytes of inputs waiting for computation (limit {3 * stepBytes})");

        // Once A closes, B's three admitted steps run; the fourth was refused with busy, which ends B.
        await a.CloseAsync();
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal((ulong)i + 1, Assert.IsType<InferenceStepResult>((await client.NextAsync(b.StreamId)).Message).StepId);
        }

        AssertError(await client.NextAsync(b.StreamId), "busy", "bytes of inputs waiting for computation");
        await ServerHarness.WaitUntil(() => h.Server.QueuedInputBytes == 0 && h.Server.ActiveSessions == 0 && h.Server.CacheTokensLeft == 100, "every input and cache is returned");

        // With the budget free again, the forward goes through.
        Assert.IsType<ForwardResponse>((await other.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, WireTensor.FromValues(new TensorShape(1, 1, h.Hidden), h.Input(1, 1, seed: 3))))).Message);
        Assert.Equal(0, h.Server.QueuedInputBytes);
    }

    [Fact]
    public async Task AQueuedInferenceStepRunsBeforeAForwardThatArrivedEarlier()
    {
        RecordingBlockExecutor? recorder = null;
        await using var h = await ServerHarness.StartAsync(wrap: e => recorder = new RecordingBlockExecutor(e));
        await using var client = await h.ConnectAsync();
        var session = await Session.OpenAsync(client, h, maxLength: 16);
        await session.StepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);

        // Hold the compute lane, queue a forward and then a step behind it, release: the step is answered first.
        using var gate = new ManualResetEventSlim();
        using var holding = new ManualResetEventSlim();
        var hold = h.Server.Scheduler.RunAsync(ComputePriority.Forward, _ => { holding.Set(); gate.Wait(ServerHarness.Bound); }, null, Ct);
        await ServerHarness.WaitUntil(() => holding.IsSet, "the lane is held");
        var forwardId = client.Connection.NewStreamId();
        await client.Connection.SendAsync(forwardId, new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 8, seed: 2), 1, 8)), Ct);
        await ServerHarness.WaitUntil(() => h.Server.Scheduler.Queued == 1, "the forward is queued");
        await session.SendStepAsync(2, 2, h.Input(1, 1, seed: 3), 1, 1);
        await ServerHarness.WaitUntil(() => h.Server.Scheduler.Queued == 2, "the step is queued");
        gate.Set();
        await hold.WaitAsync(ServerHarness.Bound, Ct);

        var forward = await client.NextAsync(forwardId);
        var step = await client.NextAsync(session.StreamId);
        Assert.IsType<ForwardResponse>(forward.Message);
        Assert.IsType<InferenceStepResult>(step.Message);
        Assert.Equal(["step", "step", "forward"], recorder!.Calls);
    }

    [Fact]
    public async Task OpeningASessionOutsideTheSpanOrLongerThanTheLimitIsRefused()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var id = client.Connection.NewStreamId();
        await client.Connection.SendAsync(id, new InferenceOpen(Guid.NewGuid(), new Models.BlockRange(1, 4), 8, WireCodec.Fp32), Ct);
        AssertError(await client.NextAsync(id), "span_mismatch", "blocks 1:4 requested");

        id = client.Connection.NewStreamId();
        await client.Connection.SendAsync(id, new InferenceOpen(Guid.NewGuid(), ServerHarness.Span, 129, WireCodec.Fp32), Ct);
        AssertError(await client.NextAsync(id), "request_too_large", "max length 129, above this server's limit of 128");
    }

    [Fact]
    public async Task EightConcurrentSessionsAllCompleteAndTheBudgetReturnsToFull()
    {
        await using var h = await ServerHarness.StartAsync(o => o.CacheTokens = 8 * 24);
        var clients = new List<TestClient>();
        for (var i = 0; i < 4; i++)
        {
            clients.Add(await h.ConnectAsync());
        }

        try
        {
            // Two sessions per connection, each on its own stream, all interleaving on the server's compute lane.
            var runs = Enumerable.Range(0, 8).Select(i => Task.Run(() => RunSessionAsync(h, clients[i % 4], i), Ct)).ToArray();
            await Task.WhenAll(runs).WaitAsync(ServerHarness.Bound, Ct);
            Assert.Equal(8, h.Server.GetStatistics().SessionsOpened);
            Assert.Equal(8 * 24, h.Server.GetStatistics().PeakCacheTokens);
            await ServerHarness.WaitUntil(() => h.Server.ActiveSessions == 0, "all sessions end");
            var info = Assert.IsType<InfoResponse>((await clients[0].CallAsync(InfoRequest.Instance)).Message);
            Assert.Equal(8ul * 24, info.CacheTokensLeft);
        }
        finally
        {
            foreach (var c in clients)
            {
                await c.DisposeAsync();
            }
        }

        static async Task RunSessionAsync(ServerHarness h, TestClient client, int index)
        {
            var session = await Session.OpenAsync(client, h, maxLength: 24);
            using var cache = h.Reference.CreateCache(1, 24);
            var prefill = h.Input(1, 4, seed: index * 31);
            var reference = new List<float[]> { LocalLocked(h, cache, prefill, 1, 4) };
            var results = new List<float[]> { (await session.StepAsync(1, 0, prefill, 1, 4)).Hidden! };

            // Hold every session open until all eight hold their cache, so they really run together.
            await ServerHarness.WaitUntil(() => h.Server.GetStatistics().PeakCacheTokens == 8 * 24 || h.Server.CacheTokensLeft == 0, "all eight sessions hold cache");
            for (var t = 0; t < 10; t++)
            {
                var token = h.Input(1, 1, seed: (index * 31) + t + 1);
                reference.Add(LocalLocked(h, cache, token, 1, 1));
                results.Add((await session.StepAsync((ulong)t + 2, 4 + t, token, 1, 1)).Hidden!);
            }

            Assert.Equal(reference, results);
            await session.CloseAsync();
        }
    }

    [Fact]
    public async Task ASessionThatDoesNotFitWaitsThenGetsCacheFull()
    {
        var time = new ManualTimeProvider();
        await using var h = await ServerHarness.StartAsync(o =>
        {
            o.CacheTokens = 100;
            o.MaxCacheShare = 1; // one client holds and waits: no per-peer share
            o.CacheWaitTimeout = TimeSpan.FromSeconds(10);
            o.TimeProvider = time;
        });
        await using var client = await h.ConnectAsync();
        var holder = await Session.OpenAsync(client, h, maxLength: 80);
        await holder.StepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);
        Assert.Equal(20, h.Server.CacheTokensLeft);

        var waiter = await Session.OpenAsync(client, h, maxLength: 50);
        await waiter.SendStepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);
        await ServerHarness.WaitUntil(() => h.Server.Budget.Waiting == 1, "the second session waits for cache");
        time.Advance(TimeSpan.FromSeconds(11));
        AssertError(await client.NextAsync(waiter.StreamId), "cache_exhausted", "cache full: the session needs 50 tokens, 20 of 100 are free");

        // Bigger than the whole budget: refused at once, no wait.
        var huge = await Session.OpenAsync(client, h, maxLength: 60);
        await huge.SendStepAsync(1, 0, h.Input(2, 1, seed: 1), 2, 1);
        AssertError(await client.NextAsync(huge.StreamId), "cache_exhausted", "needs 120 tokens, 20 of 100 are free");

        // The holder is unaffected.
        Assert.Equal(3, (await holder.StepAsync(2, 2, h.Input(1, 1, seed: 2), 1, 1)).Position);
    }

    [Fact]
    public async Task AWaitingSessionGetsItsCacheWhenAnotherCloses()
    {
        await using var h = await ServerHarness.StartAsync(o => (o.CacheTokens, o.MaxCacheShare) = (100, 1)); // one client holds and waits: no per-peer share
        await using var client = await h.ConnectAsync();
        var holder = await Session.OpenAsync(client, h, maxLength: 80);
        await holder.StepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);
        var waiter = await Session.OpenAsync(client, h, maxLength: 50);
        await waiter.SendStepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);
        await ServerHarness.WaitUntil(() => h.Server.Budget.Waiting == 1, "the second session waits for cache");
        await holder.CloseAsync();
        var result = Assert.IsType<InferenceStepResult>((await client.NextAsync(waiter.StreamId)).Message);
        Assert.Equal(2, result.Position);
        Assert.Equal(50, h.Server.CacheTokensLeft);
    }

    [Fact]
    public async Task ADroppedConnectionFreesItsSessionsCache()
    {
        await using var h = await ServerHarness.StartAsync();
        var client = await h.ConnectAsync();
        var session = await Session.OpenAsync(client, h, maxLength: 64);
        await session.StepAsync(1, 0, h.Input(2, 3, seed: 1), 2, 3);
        Assert.Equal(1024 - 128, h.Server.CacheTokensLeft);

        client.Connection.Abort("test: the client vanishes");
        await ServerHarness.WaitUntil(() => h.Server.CacheTokensLeft == 1024 && h.Server.ActiveSessions == 0, "the lost client's cache is freed");
        await client.DisposeAsync();

        await using var next = await h.ConnectAsync();
        Assert.IsType<InfoResponse>((await next.CallAsync(InfoRequest.Instance)).Message);
    }

    [Fact]
    public async Task AnIdleSessionIsClosedByTheSweeperAndItsCacheFreed()
    {
        var time = new ManualTimeProvider();
        await using var h = await ServerHarness.StartAsync(o =>
        {
            o.SessionIdleTimeout = TimeSpan.FromSeconds(20);
            o.TimeProvider = time;
        });
        await using var client = await h.ConnectAsync();
        var idle = await Session.OpenAsync(client, h, maxLength: 64);
        await idle.StepAsync(1, 0, h.Input(1, 3, seed: 1), 1, 3);
        Assert.Equal(1024 - 64, h.Server.CacheTokensLeft);

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(1, h.Server.ActiveSessions);

        // Past the timeout the sweeper closes it (in steps of 5 s: the sweeper runs on the manual clock).
        var deadline = DateTime.UtcNow + ServerHarness.Bound;
        while (h.Server.ActiveSessions != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "The idle session was never swept.");
            time.Advance(TimeSpan.FromSeconds(5));
            await Task.Delay(10, Ct);
        }

        AssertError(await client.NextAsync(idle.StreamId), "session_timeout", "received nothing for 20 s");
        await ServerHarness.WaitUntil(() => h.Server.CacheTokensLeft == 1024 && h.Server.ActiveSessions == 0, "the idle session's cache is freed");
    }

    [Fact]
    public async Task StoppingTheServerEndsSessionsWithAnErrorAndFreesEverything()
    {
        var h = await ServerHarness.StartAsync();
        try
        {
            await using var client = await h.ConnectAsync();
            var session = await Session.OpenAsync(client, h, maxLength: 64);
            await session.StepAsync(1, 0, h.Input(1, 3, seed: 1), 1, 3);

            await h.Server.StopAsync(Ct).WaitAsync(ServerHarness.Bound, Ct);
            AssertError(await client.NextAsync(session.StreamId), "shutting_down", "the server is shutting down");
            await client.Run.WaitAsync(ServerHarness.Bound, Ct);
            var stats = h.Server.GetStatistics();
            Assert.Equal(1024, stats.CacheTokensLeft);
            Assert.Equal(0, stats.ActiveSessions);
            Assert.Equal(0, stats.ActiveConnections);
            Assert.True(stats.BytesSent > 0 && stats.BytesReceived > 0);
            await Assert.ThrowsAsync<Transport.TransportException>(() => h.ConnectAsync());
        }
        finally
        {
            await h.DisposeAsync();
        }
    }

    [Fact]
    public async Task OverTcpOnLoopbackAForwardAndASessionWork()
    {
        await using var h = await ServerHarness.StartAsync(transport: new TcpTransport());
        Assert.Equal("tcp", h.Address.Scheme);
        Assert.NotEqual(0, h.Address.Port);
        await using var client = await h.ConnectAsync();
        var input = h.Input(1, 3, seed: 8);
        var reply = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(input, 1, 3)));
        h.Reference.Forward(input, 1, 3, cache: null);
        Assert.Equal(input, reply.Hidden);
        var session = await Session.OpenAsync(client, h, maxLength: 8);
        Assert.Equal(3, (await session.StepAsync(1, 0, h.Input(1, 3, seed: 2), 1, 3)).Position);
        await session.CloseAsync();
    }

    [Fact]
    public async Task A_server_that_stops_accepting_sessions_refuses_new_sessions_and_forwards_with_shutting_down_while_open_sessions_go_on()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var session = await Session.OpenAsync(client, h, maxLength: 16);
        using var cache = h.Reference.CreateCache(1, 16);
        var prefill = h.Input(1, 3, seed: 4);
        Assert.Equal(Local(h, cache, prefill, 1, 3), (await session.StepAsync(1, 0, prefill, 1, 3)).Hidden);

        h.Server.StopAcceptingSessions("this server moved to blocks 2:4: retry on another server");
        h.Server.StopAcceptingSessions("a second reason is ignored");
        var refused = await Session.OpenAsync(client, h, maxLength: 16);
        AssertError(await client.NextAsync(refused.StreamId), "shutting_down", "this server moved to blocks 2:4: retry on another server");
        AssertError(await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1))), "shutting_down", "moved to blocks 2:4");

        // The open session is served to its end.
        var token = h.Input(1, 1, seed: 5);
        Assert.Equal(Local(h, cache, token, 1, 1), (await session.StepAsync(2, 3, token, 1, 1)).Hidden);
        Assert.Equal(1, h.Server.ActiveSessions);
        await session.CloseAsync();
        await ServerHarness.WaitUntil(() => h.Server.ActiveSessions == 0, "the drained session closes");
        Assert.Equal(1, h.Server.GetStatistics().SessionsOpened);
    }

    internal static void AssertError(Received received, string code, string fragment)
    {
        var error = Assert.IsType<ErrorMessage>(received.Message);
        Assert.Equal(code, error.Code.Value);
        Assert.Contains(fragment, error.Message, StringComparison.Ordinal);
    }

    private static float[] Local(ServerHarness h, Execution.IKvCache cache, float[] input, int batch, int tokens)
    {
        var values = (float[])input.Clone();
        h.Reference.Forward(values, batch, tokens, cache);
        return values;
    }

    private static readonly Lock s_reference = new();

    private static float[] LocalLocked(ServerHarness h, Execution.IKvCache cache, float[] input, int batch, int tokens)
    {
        lock (s_reference)
        {
            return Local(h, cache, input, batch, tokens);
        }
    }

    /// <summary>One inference stream of the test client.</summary>
    internal sealed class Session
    {
        private readonly TestClient _client;
        private readonly ServerHarness _h;

        private Session(TestClient client, ServerHarness h, uint streamId)
        {
            _client = client;
            _h = h;
            StreamId = streamId;
        }

        public uint StreamId { get; }

        public static async Task<Session> OpenAsync(TestClient client, ServerHarness h, int maxLength, Models.BlockRange? blocks = null)
        {
            var id = client.Connection.NewStreamId();
            await client.Connection.SendAsync(id, new InferenceOpen(Guid.NewGuid(), blocks ?? ServerHarness.Span, maxLength, WireCodec.Fp32), Ct);
            return new Session(client, h, id);
        }

        public ValueTask SendStepAsync(ulong stepId, int start, float[] hidden, int batch, int tokens, int[]? hypo = null) =>
            _client.Connection.SendAsync(StreamId, new InferenceStep(stepId, start, _h.Tensor(hidden, batch, tokens), HypoIds: hypo is null ? null : (ReadOnlyMemory<int>?)hypo), Ct);

        public async Task<(int Position, float[]? Hidden)> StepAsync(ulong stepId, int start, float[] hidden, int batch, int tokens, int[]? hypo = null)
        {
            await SendStepAsync(stepId, start, hidden, batch, tokens, hypo);
            var received = await _client.NextAsync(StreamId);
            if (received.Message is ErrorMessage error)
            {
                Assert.Fail($"step {stepId} failed: {error.Code}: {error.Message}");
            }

            var result = Assert.IsType<InferenceStepResult>(received.Message);
            Assert.Equal(stepId, result.StepId);
            return (result.Position, received.Hidden);
        }

        public async Task CloseAsync() => await _client.Connection.SendAsync(StreamId, InferenceClose.Instance, Ct);
    }
}

internal static class WireTensorTestExtensions
{
    /// <summary>The values as a receiver decodes them after encoding with the tensor's codec.</summary>
    public static float[] ToArrayRoundTrip(this WireTensor tensor)
    {
        var bytes = new byte[tensor.PayloadBytes];
        tensor.WritePayload(bytes);
        return WireTensor.FromEncoded(tensor.Shape, tensor.Codec, bytes).ToArray();
    }
}
