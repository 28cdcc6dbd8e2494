namespace Petals.Protocol;

/// <summary>The answer to a <see cref="PingMessage"/>.</summary>
/// <param name="Nonce">The ping's nonce.</param>
public sealed record PongMessage(ulong Nonce) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.Pong;

    internal override int GetPayloadSize(ProtocolLimits limits) => 8;

    internal override void WritePayload(ref WireWriter writer) => writer.U64(Nonce);
}
