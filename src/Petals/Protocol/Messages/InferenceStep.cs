namespace Petals.Protocol;

/// <summary>One step of an inference session: hidden states to append at <see cref="StartPosition"/>.</summary>
/// <param name="StepId">The client's id of the step; a step id already applied is not applied again.</param>
/// <param name="StartPosition">The position of the step's first token; below the cache length it rolls the session back first.</param>
/// <param name="Hidden">The hidden states, <c>[batch, tokens, hidden]</c>.</param>
/// <param name="Prompts">Optional deep prompts, <c>[blocks, batch, prefix, hidden]</c>.</param>
/// <param name="HypoIds">Optional cache row order (beam search): row i of the cache becomes row <c>HypoIds[i]</c> of the old one.</param>
public sealed record InferenceStep(ulong StepId, int StartPosition, WireTensor Hidden, WireTensor? Prompts = null, ReadOnlyMemory<int>? HypoIds = null) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.InferenceStep;

    internal override FrameFlags Flags =>
        (Prompts.HasValue ? FrameFlags.HasPrompts : FrameFlags.None) | (HypoIds.HasValue ? FrameFlags.HasHypoIds : FrameFlags.None);

    /// <inheritdoc />
    public bool Equals(InferenceStep? other) =>
        other is not null
        && StepId == other.StepId
        && StartPosition == other.StartPosition
        && Hidden.Equals(other.Hidden)
        && Nullable.Equals(Prompts, other.Prompts)
        && HypoIds.HasValue == other.HypoIds.HasValue
        && (!HypoIds.HasValue || HypoIds.Value.Span.SequenceEqual(other.HypoIds!.Value.Span));

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(StepId, StartPosition, Hidden);

    internal override int GetPayloadSize(ProtocolLimits limits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(StartPosition);
        var size = 8 + 4 + Hidden.EncodedSize;
        if (Prompts.HasValue)
        {
            size = checked(size + Prompts.Value.EncodedSize);
        }

        if (HypoIds.HasValue)
        {
            if (HypoIds.Value.Length > limits.MaxHypoIds)
            {
                throw new ArgumentException($"{HypoIds.Value.Length} hypo ids exceed the limit of {limits.MaxHypoIds}.");
            }

            size = checked(size + 4 + (4 * HypoIds.Value.Length));
        }

        return size;
    }

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.U64(StepId);
        writer.U32((uint)StartPosition);
        writer.Tensor(Hidden);
        if (Prompts.HasValue)
        {
            writer.Tensor(Prompts.Value);
        }

        if (HypoIds.HasValue)
        {
            var ids = HypoIds.Value.Span;
            writer.U32((uint)ids.Length);
            foreach (var id in ids)
            {
                writer.I32(id);
            }
        }
    }
}
