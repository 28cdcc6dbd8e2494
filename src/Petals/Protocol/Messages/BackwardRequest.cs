using Petals.Models;

namespace Petals.Protocol;

/// <summary>
/// A stateless backward pass through blocks of the server's span (protocol 1.3): the server recomputes the forward pass
/// from <see cref="Inputs"/> (positions <c>0..tokens-1</c>, causal) and returns the gradient of the loss with respect to
/// the inputs, given its gradient with respect to the outputs, and the gradients of the sent prompts and LoRA weights.
/// </summary>
/// <param name="Blocks">The blocks to run: the server's span or a part of it.</param>
/// <param name="ReplyCodec">The codec of the gradients in the response (fp32 unless the caller accepts the loss of precision).</param>
/// <param name="Inputs">The inputs of the blocks as the forward pass got them, <c>[batch, tokens, hidden]</c>.</param>
/// <param name="GradOutputs">dLoss/dOutputs, the same shape as <see cref="Inputs"/>.</param>
/// <param name="Prompts">Optional deep prompts, <c>[blocks, batch, prefix, hidden]</c>; their gradient comes back.</param>
public sealed record BackwardRequest(BlockRange Blocks, WireCodec ReplyCodec, WireTensor Inputs, WireTensor GradOutputs, WireTensor? Prompts = null) : ProtocolMessage
{
    /// <summary>Optional LoRA weights of the caller for <see cref="Blocks"/>; their gradient comes back.</summary>
    public WireLora? Lora { get; init; }

    /// <summary>Optional name of an adapter the server holds; not together with <see cref="Lora"/>.</summary>
    public string? Adapter { get; init; }

    /// <inheritdoc />
    public override FrameType Type => FrameType.BackwardRequest;

    internal override FrameFlags Flags => AdaptationFields.Flags(Prompts, Lora, Adapter);

    internal override int GetPayloadSize(ProtocolLimits limits) =>
        checked(8 + 1 + Inputs.EncodedSize + GradOutputs.EncodedSize + AdaptationFields.Size(Prompts, Lora, Adapter, limits));

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.Blocks(Blocks);
        writer.U8((byte)ReplyCodec);
        writer.Tensor(Inputs);
        writer.Tensor(GradOutputs);
        AdaptationFields.Write(ref writer, Prompts, Lora, Adapter);
    }
}
