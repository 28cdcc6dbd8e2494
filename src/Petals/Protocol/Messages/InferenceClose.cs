namespace Petals.Protocol;

/// <summary>Ends the inference session of its stream; the server frees the session cache. Empty payload.</summary>
public sealed record InferenceClose : ProtocolMessage
{
    /// <summary>The single instance (the message has no fields).</summary>
    public static InferenceClose Instance { get; } = new();

    /// <inheritdoc />
    public override FrameType Type => FrameType.InferenceClose;

    internal override int GetPayloadSize(ProtocolLimits limits) => 0;

    internal override void WritePayload(ref WireWriter writer)
    {
    }
}
