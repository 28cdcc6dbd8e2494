namespace Petals.Protocol;

/// <summary>The gradients produced by a <see cref="BackwardRequest"/> (protocol 1.3).</summary>
/// <param name="GradInputs">dLoss/dInputs, <c>[batch, tokens, hidden]</c>.</param>
/// <param name="GradPrompts">dLoss/dPrompts, the shape of the request's prompts; present exactly when the request had prompts.</param>
/// <param name="GradLora">dLoss/dLoRA values, <c>[count]</c> in the request's LoRA layout; present exactly when the request sent LoRA weights.</param>
public sealed record BackwardResponse(WireTensor GradInputs, WireTensor? GradPrompts = null, WireTensor? GradLora = null) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.BackwardResponse;

    internal override FrameFlags Flags =>
        (GradPrompts.HasValue ? FrameFlags.HasPrompts : FrameFlags.None) | (GradLora.HasValue ? FrameFlags.HasLora : FrameFlags.None);

    internal override int GetPayloadSize(ProtocolLimits limits) =>
        checked(GradInputs.EncodedSize + (GradPrompts?.EncodedSize ?? 0) + (GradLora?.EncodedSize ?? 0));

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.Tensor(GradInputs);
        if (GradPrompts is { } prompts)
        {
            writer.Tensor(prompts);
        }

        if (GradLora is { } lora)
        {
            writer.Tensor(lora);
        }
    }
}
