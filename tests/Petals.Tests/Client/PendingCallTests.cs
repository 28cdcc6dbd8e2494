using Petals.Client;

namespace Petals.Tests.Client;

/// <summary>The client's reusable call: an answer claimed for decoding wins over a late cancellation, and a canceled call is never written into.</summary>
public sealed class PendingCallTests
{
    [Fact]
    public async Task A_claimed_call_ignores_a_cancellation_and_completes_with_its_answer()
    {
        var call = new RemoteSpanConnection.PendingCall();
        call.Arm(7, new float[4], long.MaxValue);
        var waiting = call.AsValueTask();
        Assert.True(call.TryClaim());

        // The caller's token fires while the answer is being decoded into its buffer: the answer must still win.
        call.Fail(new OperationCanceledException());
        Assert.False(waiting.IsCompleted);
        call.Complete(new RemoteSpanConnection.CallOutcome(3, 9, null));
        var outcome = await waiting;
        Assert.Equal(3ul, outcome.StepId);
        Assert.Equal(9, outcome.Position);
    }

    [Fact]
    public async Task A_canceled_call_cannot_be_claimed_so_its_buffer_is_left_alone()
    {
        var call = new RemoteSpanConnection.PendingCall();
        call.Arm(7, new float[4], long.MaxValue);
        var waiting = call.AsValueTask();
        call.Fail(new OperationCanceledException());
        Assert.False(call.TryClaim());
        await Assert.ThrowsAsync<OperationCanceledException>(async () => await waiting);

        // The call can be armed again for the next request.
        call.Arm(9, new float[4], long.MaxValue);
        var next = call.AsValueTask();
        Assert.True(call.TryClaim());
        call.Fail(new InvalidOperationException("bad answer"), claimed: true);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await next);
    }

    [Fact]
    public void A_call_waiting_for_its_answer_cannot_be_armed_again()
    {
        var call = new RemoteSpanConnection.PendingCall();
        call.Arm(1, new float[1], long.MaxValue);
        var error = Assert.Throws<InvalidOperationException>(() => call.Arm(3, new float[1], long.MaxValue));
        Assert.Contains("stream 1 still waits", error.Message, StringComparison.Ordinal);
        Assert.True(call.TryClaim());
        Assert.Throws<InvalidOperationException>(() => call.Arm(3, new float[1], long.MaxValue));
    }
}
