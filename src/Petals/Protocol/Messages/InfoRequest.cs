namespace Petals.Protocol;

/// <summary>Asks a peer for its <see cref="InfoResponse"/>. Empty payload.</summary>
public sealed record InfoRequest : ProtocolMessage
{
    /// <summary>The single instance (the message has no fields).</summary>
    public static InfoRequest Instance { get; } = new();

    /// <inheritdoc />
    public override FrameType Type => FrameType.InfoRequest;

    internal override int GetPayloadSize(ProtocolLimits limits) => 0;

    internal override void WritePayload(ref WireWriter writer)
    {
    }
}
