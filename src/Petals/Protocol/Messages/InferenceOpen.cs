using Petals.Models;

namespace Petals.Protocol;

/// <summary>Opens an inference session on its stream.</summary>
/// <param name="SessionId">The client's id of the session (also used when a replacement server is replayed).</param>
/// <param name="Blocks">The blocks the session runs through: the server's span or a part of it.</param>
/// <param name="MaxLength">The most tokens the session will hold (the server reserves cache for them); at least 1.</param>
/// <param name="ReplyCodec">The codec of the hidden states in step results.</param>
public sealed record InferenceOpen(Guid SessionId, BlockRange Blocks, int MaxLength, WireCodec ReplyCodec) : ProtocolMessage
{
    /// <summary>Optional LoRA weights of the caller for <see cref="Blocks"/>, applied to every step (protocol 1.3).</summary>
    public WireLora? Lora { get; init; }

    /// <summary>Optional name of an adapter the server holds, applied to every step (protocol 1.3); not together with <see cref="Lora"/>.</summary>
    public string? Adapter { get; init; }

    /// <inheritdoc />
    public override FrameType Type => FrameType.InferenceOpen;

    internal override FrameFlags Flags => AdaptationFields.Flags(null, Lora, Adapter);

    internal override int GetPayloadSize(ProtocolLimits limits)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxLength);
        return checked(16 + 8 + 4 + 1 + AdaptationFields.Size(null, Lora, Adapter, limits));
    }

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.Guid(SessionId);
        writer.Blocks(Blocks);
        writer.U32((uint)MaxLength);
        writer.U8((byte)ReplyCodec);
        AdaptationFields.Write(ref writer, null, Lora, Adapter);
    }
}
