using Petals.Protocol;
using Petals.Server;

namespace Petals.Tests.Server;

/// <summary>NaN and infinities in any request are refused with <c>non_finite_input</c> before compute; a session survives.</summary>
public sealed class NonFiniteInputTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static TheoryData<float, string> Bad => new()
    {
        { float.NaN, "NaN" },
        { float.PositiveInfinity, "+Infinity" },
        { float.NegativeInfinity, "-Infinity" },
    };

    [Theory]
    [MemberData(nameof(Bad))]
    public async Task ANonFiniteStepIsRefusedAndTheSessionGoesOnWithItsCacheUnchanged(float bad, string kind)
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var session = await BlockServerTests.Session.OpenAsync(client, h, maxLength: 16);
        using var cache = h.Reference.CreateCache(1, 16);

        var prefill = h.Input(1, 3, seed: 1);
        Assert.Equal(Local(h, cache, prefill, 3), (await session.StepAsync(1, 0, prefill, 1, 3)).Hidden);
        var tokensBefore = h.Server.CacheTokensLeft;

        // Token 1, feature 5 of a two-token step: flat index H + 5.
        var poisoned = h.Input(1, 2, seed: 2);
        poisoned[h.Hidden + 5] = bad;
        await session.SendStepAsync(2, 3, poisoned, 1, 2);
        BlockServerTests.AssertError(await client.NextAsync(session.StreamId), "non_finite_input",
            $"step 2: the hidden states [1, 2, {h.Hidden}] hold {kind} at index {h.Hidden + 5} ([0, 1, 5]); the step was not run and the session and its cache are unchanged");

        // The same positions again, finite: the result is what a session that never saw the bad step computes.
        var token = h.Input(1, 1, seed: 3);
        var next = await session.StepAsync(3, 3, token, 1, 1);
        Assert.Equal(4, next.Position);
        Assert.Equal(Local(h, cache, token, 1), next.Hidden);
        Assert.Equal(tokensBefore, h.Server.CacheTokensLeft);
        var stats = h.Server.GetStatistics();
        Assert.Equal(1, stats.NonFiniteInputsRefused);
        Assert.Equal(2, stats.InferenceSteps);
        Assert.Equal(1, stats.ActiveSessions);
    }

    [Fact]
    public async Task ANonFiniteFirstStepReservesNoCacheAndTheSessionStillOpensOnTheNext()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var session = await BlockServerTests.Session.OpenAsync(client, h, maxLength: 16);
        var poisoned = h.Input(1, 1, seed: 1);
        poisoned[0] = float.NaN;
        await session.SendStepAsync(1, 0, poisoned, 1, 1);
        BlockServerTests.AssertError(await client.NextAsync(session.StreamId), "non_finite_input", "hold NaN at index 0 ([0, 0, 0])");
        Assert.Equal(1024, h.Server.CacheTokensLeft);
        using var cache = h.Reference.CreateCache(1, 16);
        var token = h.Input(1, 1, seed: 2);
        Assert.Equal(Local(h, cache, token, 1), (await session.StepAsync(1, 0, token, 1, 1)).Hidden); // the step id was never applied
        Assert.Equal(1024 - 16, h.Server.CacheTokensLeft);
    }

    [Theory]
    [MemberData(nameof(Bad))]
    public async Task ANonFiniteForwardIsRefusedBeforeComputeAndTheConnectionKeepsServing(float bad, string kind)
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var input = h.Input(2, 3, seed: 1);
        var index = (1 * 3 * h.Hidden) + (2 * h.Hidden) + 7; // batch 1, token 2, feature 7
        input[index] = bad;
        var reply = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(input, 2, 3)));
        BlockServerTests.AssertError(reply, "non_finite_input", $"the hidden states [2, 3, {h.Hidden}] hold {kind} at index {index} ([1, 2, 7]); nothing was computed");
        Assert.Equal(0, h.Server.GetStatistics().ForwardCalls);
        Assert.Equal(0, h.Server.QueuedInputBytes);
        Assert.IsType<ForwardResponse>((await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1)))).Message);
        Assert.Equal(1, h.Server.GetStatistics().NonFiniteInputsRefused);
    }

    [Fact]
    public async Task AValueThatOverflowsFp16OnTheWireIsAnInfinityAndRefused()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var input = h.Input(1, 1, seed: 1);
        input[3] = 1e6f; // above fp16's largest finite value, 65504
        var reply = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(input, 1, 1, WireCodec.Fp16)));
        BlockServerTests.AssertError(reply, "non_finite_input", "hold +Infinity at index 3 ([0, 0, 3])");
    }

    [Fact]
    public async Task NonFinitePromptsAreRefusedAndTheSessionGoesOnButPromptsOfTheWrongShapeEndIt()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var prompts = new float[2 * h.Hidden];
        prompts[h.Hidden + 1] = float.NegativeInfinity;
        var promptTensor = WireTensor.FromValues(new TensorShape(2, 1, 1, h.Hidden), prompts);
        var forward = await client.CallAsync(new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 1, 0), 1, 1), promptTensor));
        BlockServerTests.AssertError(forward, "non_finite_input", $"the prompts [2, 1, 1, {h.Hidden}] hold -Infinity at index {h.Hidden + 1} ([1, 0, 0, 1])");

        var session = await BlockServerTests.Session.OpenAsync(client, h, maxLength: 8);
        await client.Connection.SendAsync(session.StreamId, new InferenceStep(1, 0, h.Tensor(h.Input(1, 1, 0), 1, 1), promptTensor), Ct);
        BlockServerTests.AssertError(await client.NextAsync(session.StreamId), "non_finite_input", "step 1: the prompts");
        Assert.Equal(1, (await session.StepAsync(1, 0, h.Input(1, 1, 1), 1, 1)).Position);

        // Prompts for one block where the session runs two: bad_shape, which ends the session.
        var wrong = WireTensor.FromValues(new TensorShape(1, 1, 1, h.Hidden), new float[h.Hidden]);
        await client.Connection.SendAsync(session.StreamId, new InferenceStep(2, 1, h.Tensor(h.Input(1, 1, 0), 1, 1), wrong), Ct);
        BlockServerTests.AssertError(await client.NextAsync(session.StreamId), "bad_shape", $"deep prompts [1, 1, 1, {h.Hidden}] do not fit [blocks 2, batch 1, prefix, hidden {h.Hidden}]");
        Assert.Equal(2, h.Server.GetStatistics().NonFiniteInputsRefused);
    }

    [Fact]
    public void AStepRefusalKeepsAnInferenceCallOpenOnBothSidesAndAnyOtherErrorEndsIt()
    {
        var hidden = WireTensor.FromValues(new TensorShape(1, 1, 2), new float[2]);
        var open = new InferenceOpen(Guid.NewGuid(), new Models.BlockRange(0, 4), 8, WireCodec.Fp32);
        var refusal = new ErrorMessage(ProtocolErrorCode.NonFiniteInput, "NaN");
        var callee = new CallTracker(CallRole.Callee);
        var caller = new CallTracker(CallRole.Caller);
        caller.OnSent(1, open);
        callee.OnReceived(1, open);
        caller.OnSent(1, new InferenceStep(1, 0, hidden));
        callee.OnReceived(1, new InferenceStep(1, 0, hidden));
        callee.OnSent(1, refusal);
        caller.OnReceived(1, refusal);
        Assert.Equal(1, callee.OpenCalls);
        Assert.Equal(1, caller.OpenCalls);
        callee.OnReceived(1, new InferenceStep(2, 0, hidden)); // still in order

        // On a unary call the same code ends it; another error ends an inference call.
        caller.OnSent(3, InfoRequest.Instance);
        caller.OnReceived(3, refusal);
        callee.OnSent(1, new ErrorMessage(ProtocolErrorCode.Internal, "boom"));
        caller.OnReceived(1, new ErrorMessage(ProtocolErrorCode.Internal, "boom"));
        Assert.Equal(0, callee.OpenCalls);
        Assert.Equal(0, caller.OpenCalls);
    }

    private static float[] Local(ServerHarness h, Execution.IKvCache cache, float[] input, int tokens)
    {
        var values = (float[])input.Clone();
        h.Reference.Forward(values, 1, tokens, cache);
        return values;
    }
}
