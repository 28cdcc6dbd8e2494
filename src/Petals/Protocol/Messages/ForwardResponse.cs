namespace Petals.Protocol;

/// <summary>The hidden states produced by a <see cref="ForwardRequest"/>.</summary>
/// <param name="Hidden">The output hidden states, <c>[batch, tokens, hidden]</c>.</param>
public sealed record ForwardResponse(WireTensor Hidden) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.ForwardResponse;

    internal override int GetPayloadSize(ProtocolLimits limits) => Hidden.EncodedSize;

    internal override void WritePayload(ref WireWriter writer) => writer.Tensor(Hidden);
}
