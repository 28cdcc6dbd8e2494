using Petals.Models;

namespace Petals.Protocol;

/// <summary>A stateless forward pass of a batch of hidden states through blocks of the server's span.</summary>
/// <param name="Blocks">The blocks to run: the server's span or a part of it.</param>
/// <param name="ReplyCodec">The codec of the hidden states in the response.</param>
/// <param name="Hidden">The hidden states, <c>[batch, tokens, hidden]</c>.</param>
/// <param name="Prompts">Optional deep prompts, <c>[blocks, batch, prefix, hidden]</c>.</param>
public sealed record ForwardRequest(BlockRange Blocks, WireCodec ReplyCodec, WireTensor Hidden, WireTensor? Prompts = null) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.ForwardRequest;

    internal override FrameFlags Flags => Prompts.HasValue ? FrameFlags.HasPrompts : FrameFlags.None;

    internal override int GetPayloadSize(ProtocolLimits limits) =>
        checked(8 + 1 + Hidden.EncodedSize + (Prompts.HasValue ? Prompts.Value.EncodedSize : 0));

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.Blocks(Blocks);
        writer.U8((byte)ReplyCodec);
        writer.Tensor(Hidden);
        if (Prompts.HasValue)
        {
            writer.Tensor(Prompts.Value);
        }
    }
}
