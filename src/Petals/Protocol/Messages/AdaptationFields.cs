namespace Petals.Protocol;

/// <summary>The optional trailing fields of a 1.3 request, in wire order: prompts, LoRA weights, adapter name (each present by its flag).</summary>
internal static class AdaptationFields
{
    public static FrameFlags Flags(WireTensor? prompts, WireLora? lora, string? adapter) =>
        (prompts.HasValue ? FrameFlags.HasPrompts : FrameFlags.None)
        | (lora.HasValue ? FrameFlags.HasLora : FrameFlags.None)
        | (adapter is not null ? FrameFlags.HasAdapter : FrameFlags.None);

    public static int Size(WireTensor? prompts, WireLora? lora, string? adapter, ProtocolLimits limits)
    {
        var size = 0;
        if (prompts is { } p)
        {
            if (p.Shape.Rank != 4)
            {
                throw new ArgumentException($"Deep prompts are [blocks, batch, prefix, hidden], not {p.Shape}.");
            }

            size = checked(size + p.EncodedSize);
        }

        if (lora is { } l)
        {
            l.Check();
            size = checked(size + l.EncodedSize);
        }

        if (adapter is not null)
        {
            if (adapter.Length == 0)
            {
                throw new ArgumentException("An adapter name is not empty.");
            }

            size = checked(size + WireWriter.StringSize(adapter, "adapter", limits.MaxStringBytes));
        }

        return size;
    }

    public static void Write(ref WireWriter writer, WireTensor? prompts, WireLora? lora, string? adapter)
    {
        if (prompts is { } p)
        {
            writer.Tensor(p);
        }

        lora?.Write(ref writer);
        if (adapter is not null)
        {
            writer.String(adapter);
        }
    }

    public static (WireTensor? Prompts, WireLora? Lora, string? Adapter) Read(ref WireReader reader, FrameFlags flags)
    {
        var prompts = ReadPrompts(ref reader, flags);

        WireLora? lora = (flags & FrameFlags.HasLora) != 0 ? WireLora.Read(ref reader) : null;
        string? adapter = null;
        if ((flags & FrameFlags.HasAdapter) != 0)
        {
            adapter = reader.String("adapter");
            if (adapter.Length == 0)
            {
                throw reader.Error(ProtocolErrorCode.MalformedFrame, "adapter", "is empty; an adapter name has at least one character.");
            }
        }

        return (prompts, lora, adapter);
    }

    /// <summary>Reads the deep prompts when <see cref="FrameFlags.HasPrompts"/> is set: a rank-4 tensor <c>[blocks, batch, prefix, hidden]</c>.</summary>
    /// <exception cref="ProtocolException"><c>bad_shape</c> for another rank.</exception>
    public static WireTensor? ReadPrompts(ref WireReader reader, FrameFlags flags)
    {
        if ((flags & FrameFlags.HasPrompts) == 0)
        {
            return null;
        }

        var prompts = reader.Tensor("prompts");
        if (prompts.Shape.Rank != 4)
        {
            throw reader.Error(ProtocolErrorCode.BadShape, "prompts", $"has shape {prompts.Shape}; deep prompts are [blocks, batch, prefix, hidden].");
        }

        return prompts;
    }
}
