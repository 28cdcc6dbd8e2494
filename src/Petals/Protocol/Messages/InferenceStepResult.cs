namespace Petals.Protocol;

/// <summary>The server's answer to one <see cref="InferenceStep"/>.</summary>
/// <param name="StepId">The id of the step answered.</param>
/// <param name="Position">The number of tokens in the session cache after the step.</param>
/// <param name="Hidden">The output hidden states, <c>[batch, tokens, hidden]</c>.</param>
public sealed record InferenceStepResult(ulong StepId, int Position, WireTensor Hidden) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.InferenceStepResult;

    internal override int GetPayloadSize(ProtocolLimits limits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(Position);
        return 8 + 4 + Hidden.EncodedSize;
    }

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.U64(StepId);
        writer.U32((uint)Position);
        writer.Tensor(Hidden);
    }
}
