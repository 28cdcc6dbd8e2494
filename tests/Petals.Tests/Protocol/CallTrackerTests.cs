using Petals.Models;
using Petals.Protocol;

namespace Petals.Tests.Protocol;

[Collection(ProtocolTestGroup.Name)]
public sealed class CallTrackerTests
{
    private static readonly WireTensor Hidden = WireTensor.FromValues(new TensorShape(1, 1, 2), new float[2]);
    private static readonly InferenceOpen Open = new(Guid.NewGuid(), new BlockRange(0, 4), 128, WireCodec.Fp16);
    private static readonly InferenceStep Step = new(1, 0, Hidden);

    private static void OutOfOrder(CallTracker tracker, uint stream, ProtocolMessage message, string fragment)
    {
        var ex = Assert.Throws<ProtocolException>(() => tracker.OnReceived(stream, message));
        Assert.Equal(ProtocolErrorCode.OutOfOrder, ex.Code);
        Assert.Equal(stream, ex.StreamId);
        Assert.False(ex.IsConnectionFatal);
        Assert.Contains(fragment, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CalleeFollowsAnInferenceSessionAndUnaryCalls()
    {
        var tracker = new CallTracker(CallRole.Callee);
        tracker.OnReceived(1, Open);
        tracker.OnReceived(1, Step);
        tracker.OnSent(1, new InferenceStepResult(1, 1, Hidden));
        tracker.OnReceived(1, Step with { StepId = 2 });
        tracker.OnReceived(3, InfoRequest.Instance);
        Assert.Equal(2, tracker.OpenCalls);
        OutOfOrder(tracker, 3, InfoRequest.Instance, "unanswered call");
        tracker.OnReceived(3, new PingMessage(1));
        tracker.OnSent(3, new PongMessage(1));
        tracker.OnReceived(1, InferenceClose.Instance);
        Assert.Equal(0, tracker.OpenCalls);

        // Stream 0 is connection-level and never tracked.
        tracker.OnReceived(0, new PingMessage(5));
        Assert.Equal(0, tracker.OpenCalls);
    }

    [Fact]
    public void CalleeRejectsStepsWithoutOpenAndAnswersFromTheCaller()
    {
        var tracker = new CallTracker(CallRole.Callee);
        OutOfOrder(tracker, 5, Step, "no inference session");
        OutOfOrder(tracker, 5, InferenceClose.Instance, "no inference session");
        tracker.OnReceived(7, new ForwardRequest(new BlockRange(0, 1), WireCodec.Fp32, Hidden));
        OutOfOrder(tracker, 7, Step, "no inference session");
        Assert.Equal(0, tracker.OpenCalls); // the violation dropped stream 7
        tracker.OnReceived(9, Open);
        OutOfOrder(tracker, 9, Open, "already carries an inference session");
        OutOfOrder(tracker, 11, new ForwardResponse(Hidden), "a callee receives");
    }

    [Fact]
    public void CallerAcceptsOnlyAnswersToItsCalls()
    {
        var tracker = new CallTracker(CallRole.Caller);
        OutOfOrder(tracker, 1, new PongMessage(1), "no unary call");
        tracker.OnSent(1, new PingMessage(1));
        Assert.Throws<InvalidOperationException>(() => tracker.OnSent(1, InfoRequest.Instance));
        tracker.OnReceived(1, new PongMessage(1));
        tracker.OnSent(3, Open);
        OutOfOrder(tracker, 3, new ForwardResponse(Hidden), "no unary call");
        tracker.OnSent(5, Open);
        tracker.OnReceived(5, new InferenceStepResult(1, 1, Hidden));
        tracker.OnReceived(5, new ErrorMessage(ProtocolErrorCode.CacheExhausted, "full"));
        OutOfOrder(tracker, 5, new InferenceStepResult(2, 2, Hidden), "no inference session");
        OutOfOrder(tracker, 7, InfoRequest.Instance, "a caller receives");
    }

    [Fact]
    public void OpenCallsAreBounded()
    {
        var tracker = new CallTracker(CallRole.Callee, maxStreams: 2);
        tracker.OnReceived(1, Open);
        tracker.OnReceived(2, Open);
        var ex = Assert.Throws<ProtocolException>(() => tracker.OnReceived(3, Open));
        Assert.Equal(ProtocolErrorCode.Busy, ex.Code);
        tracker.OnReceived(1, InferenceClose.Instance);
        tracker.OnReceived(3, Open);
    }
}
