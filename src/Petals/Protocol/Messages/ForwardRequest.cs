using Petals.Models;

namespace Petals.Protocol;

/// <summary>A stateless forward pass of a batch of hidden states through blocks of the server's span.</summary>
/// <param name="Blocks">The blocks to run: the server's span or a part of it.</param>
/// <param name="ReplyCodec">The codec of the hidden states in the response.</param>
/// <param name="Hidden">The hidden states, <c>[batch, tokens, hidden]</c>.</param>
/// <param name="Prompts">Optional deep prompts, <c>[blocks, batch, prefix, hidden]</c> (protocol 1.3; prefix ≤ tokens).</param>
public sealed record ForwardRequest(BlockRange Blocks, WireCodec ReplyCodec, WireTensor Hidden, WireTensor? Prompts = null) : ProtocolMessage
{
    /// <summary>Optional LoRA weights of the caller for <see cref="Blocks"/> (protocol 1.3).</summary>
    public WireLora? Lora { get; init; }

    /// <summary>Optional name of an adapter the server holds (protocol 1.3); not together with <see cref="Lora"/>.</summary>
    public string? Adapter { get; init; }

    /// <inheritdoc />
    public override FrameType Type => FrameType.ForwardRequest;

    internal override FrameFlags Flags => AdaptationFields.Flags(Prompts, Lora, Adapter);

    internal override int GetPayloadSize(ProtocolLimits limits) =>
        checked(8 + 1 + Hidden.EncodedSize + AdaptationFields.Size(Prompts, Lora, Adapter, limits));

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.Blocks(Blocks);
        writer.U8((byte)ReplyCodec);
        writer.Tensor(Hidden);
        AdaptationFields.Write(ref writer, Prompts, Lora, Adapter);
    }
}
