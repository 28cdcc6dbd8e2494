using Petals.Models;

namespace Petals.Protocol;

/// <summary>Opens an inference session on its stream.</summary>
/// <param name="SessionId">The client's id of the session (also used when a replacement server is replayed).</param>
/// <param name="Blocks">The blocks the session runs through: the server's span or a part of it.</param>
/// <param name="MaxLength">The most tokens the session will hold (the server reserves cache for them); at least 1.</param>
/// <param name="ReplyCodec">The codec of the hidden states in step results.</param>
public sealed record InferenceOpen(Guid SessionId, BlockRange Blocks, int MaxLength, WireCodec ReplyCodec) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.InferenceOpen;

    internal override int GetPayloadSize(ProtocolLimits limits)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxLength);
        return 16 + 8 + 4 + 1;
    }

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.Guid(SessionId);
        writer.Blocks(Blocks);
        writer.U32((uint)MaxLength);
        writer.U8((byte)ReplyCodec);
    }
}
