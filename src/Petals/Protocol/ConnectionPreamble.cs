using System.Buffers.Binary;
using System.Text;

namespace Petals.Protocol;

/// <summary>What a peer announces when a connection opens (docs/wire-protocol.md, section 1).</summary>
/// <param name="PeerId">The sender's peer id: 1 to 255 UTF-8 bytes.</param>
/// <param name="ModelId">The model the sender serves or wants: up to 255 UTF-8 bytes; empty means "no particular model".</param>
/// <param name="MaxFrameSize">The largest frame payload the sender accepts.</param>
/// <param name="VersionMajor">The sender's protocol major version.</param>
/// <param name="VersionMinor">The sender's protocol minor version.</param>
public sealed record ConnectionPreamble(
    string PeerId,
    string ModelId,
    int MaxFrameSize = 1 << 20,
    ushort VersionMajor = ConnectionPreamble.CurrentVersionMajor,
    ushort VersionMinor = ConnectionPreamble.CurrentVersionMinor)
{
    /// <summary>The protocol major version implemented here.</summary>
    public const ushort CurrentVersionMajor = 1;

    /// <summary>
    /// The protocol minor version implemented here: 3 (1.1 adds the stated error bound to InfoResponse; 1.2 the int8
    /// blockwise wire codec and the weight quantization after the error bound; 1.3 fine-tuning: the backward call, deep
    /// prompts and sent LoRA weights on forward calls and sessions, server-held adapters by name and their list in InfoResponse).
    /// </summary>
    public const ushort CurrentVersionMinor = 3;

    /// <summary>The first minor version with the fine-tuning messages and fields (backward, prompts, LoRA, adapters).</summary>
    public const ushort FineTuningVersionMinor = 3;

    /// <summary>The preamble magic, ASCII <c>PTLS</c>.</summary>
    internal static ReadOnlySpan<byte> Magic => "PTLS"u8;

    /// <summary>The size of magic and body length.</summary>
    internal const int PrefixSize = 6;

    /// <summary>The encoded size of this preamble.</summary>
    /// <exception cref="ArgumentException">When an id is too long or the peer id is empty, or the frame size is below the minimum.</exception>
    internal int GetSize()
    {
        if (PeerId is null || ModelId is null)
        {
            throw new ArgumentException("The peer id and model id must not be null.");
        }

        var peer = Encoding.UTF8.GetByteCount(PeerId);
        var model = Encoding.UTF8.GetByteCount(ModelId);
        if (peer is < 1 or > 255)
        {
            throw new ArgumentException($"The peer id takes {peer} UTF-8 bytes; it must take 1 to 255.");
        }

        if (model > 255)
        {
            throw new ArgumentException($"The model id takes {model} UTF-8 bytes; at most 255 are allowed.");
        }

        if (MaxFrameSize < ProtocolLimits.MinFrameSize)
        {
            throw new ArgumentException($"The maximum frame size {MaxFrameSize} is below {ProtocolLimits.MinFrameSize}.");
        }

        return PrefixSize + 2 + 2 + 4 + 1 + peer + 1 + model;
    }

    /// <summary>Writes the preamble; <paramref name="destination"/> holds exactly <see cref="GetSize"/> bytes.</summary>
    internal void Write(Span<byte> destination)
    {
        Magic.CopyTo(destination);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[4..], (ushort)(destination.Length - PrefixSize));
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], VersionMajor);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[8..], VersionMinor);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[10..], (uint)MaxFrameSize);
        var offset = 14;
        var peer = Encoding.UTF8.GetBytes(PeerId, destination[(offset + 1)..]);
        destination[offset] = (byte)peer;
        offset += 1 + peer;
        var model = Encoding.UTF8.GetBytes(ModelId, destination[(offset + 1)..]);
        destination[offset] = (byte)model;
    }
}
