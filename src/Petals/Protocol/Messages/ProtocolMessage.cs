namespace Petals.Protocol;

/// <summary>A message of the wire protocol (docs/wire-protocol.md, section 5). The set of messages is closed.</summary>
/// <remarks>Immutable; tensors received in a message point into the reader's buffer until its next read.</remarks>
public abstract record ProtocolMessage
{
    private protected ProtocolMessage()
    {
    }

    /// <summary>The frame type that carries the message.</summary>
    public abstract FrameType Type { get; }

    /// <summary>The message-specific flags of its first frame (optional fields present).</summary>
    internal virtual FrameFlags Flags => FrameFlags.None;

    /// <summary>The payload size in bytes; also checks sizes against the limits the receiver will apply.</summary>
    internal abstract int GetPayloadSize(ProtocolLimits limits);

    /// <summary>Writes the payload; the writer's span holds exactly <see cref="GetPayloadSize"/> bytes.</summary>
    internal abstract void WritePayload(ref WireWriter writer);
}
