namespace Petals.Protocol;

/// <summary>A liveness and latency probe; the peer answers a <see cref="PongMessage"/> with the same nonce.</summary>
/// <param name="Nonce">An arbitrary value echoed by the pong.</param>
public sealed record PingMessage(ulong Nonce) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.Ping;

    internal override int GetPayloadSize(ProtocolLimits limits) => 8;

    internal override void WritePayload(ref WireWriter writer) => writer.U64(Nonce);
}
