using System.Buffers.Binary;

namespace Petals.Protocol;

/// <summary>The 10-byte header of every frame: u32 payload length, u8 type, u8 flags, u32 stream id (docs/wire-protocol.md, section 2).</summary>
/// <param name="PayloadLength">The number of payload bytes after the header.</param>
/// <param name="Type">The frame type.</param>
/// <param name="Flags">The frame flags.</param>
/// <param name="StreamId">The stream (call) the frame belongs to; 0 for the connection.</param>
public readonly record struct FrameHeader(int PayloadLength, FrameType Type, FrameFlags Flags, uint StreamId)
{
    /// <summary>The size of a header in bytes.</summary>
    public const int Size = 10;

    /// <summary>Writes the header into the first <see cref="Size"/> bytes of <paramref name="destination"/>.</summary>
    /// <param name="destination">At least <see cref="Size"/> bytes.</param>
    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)PayloadLength);
        destination[4] = (byte)Type;
        destination[5] = (byte)Flags;
        BinaryPrimitives.WriteUInt32LittleEndian(destination[6..], StreamId);
    }
}
