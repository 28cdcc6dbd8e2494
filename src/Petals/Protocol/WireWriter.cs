using System.Buffers.Binary;
using System.Text;
using Petals.Models;

namespace Petals.Protocol;

/// <summary>Writes message fields little-endian into a span sized beforehand by the message's <c>PayloadSize</c>.</summary>
internal ref struct WireWriter(Span<byte> destination)
{
    private readonly Span<byte> _destination = destination;
    private int _offset;

    public readonly int Written => _offset;

    public void U8(byte value) => _destination[_offset++] = value;

    public void U16(ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_destination[_offset..], value);
        _offset += 2;
    }

    public void U32(uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_destination[_offset..], value);
        _offset += 4;
    }

    public void I32(int value)
    {
        BinaryPrimitives.WriteInt32LittleEndian(_destination[_offset..], value);
        _offset += 4;
    }

    public void U64(ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_destination[_offset..], value);
        _offset += 8;
    }

    public void Guid(Guid value)
    {
        value.TryWriteBytes(_destination.Slice(_offset, 16));
        _offset += 16;
    }

    public void Blocks(BlockRange blocks)
    {
        U32((uint)blocks.Start);
        U32((uint)blocks.End);
    }

    public void String(string value)
    {
        var length = Encoding.UTF8.GetBytes(value, _destination[(_offset + 2)..]);
        U16((ushort)length);
        _offset += length;
    }

    public void Tensor(in WireTensor tensor)
    {
        U8((byte)tensor.Codec);
        U8((byte)tensor.Shape.Rank);
        for (var i = 0; i < tensor.Shape.Rank; i++)
        {
            U32((uint)tensor.Shape[i]);
        }

        var bytes = tensor.PayloadBytes;
        tensor.WritePayload(_destination.Slice(_offset, bytes));
        _offset += bytes;
    }

    /// <summary>The wire size of a string, checked against the limit the receiver will apply.</summary>
    public static int StringSize(string value, string field, int maxBytes)
    {
        var bytes = Encoding.UTF8.GetByteCount(value);
        if (bytes > maxBytes)
        {
            throw new ArgumentException($"Field '{field}' takes {bytes} UTF-8 bytes; the limit is {maxBytes}.", field);
        }

        return 2 + bytes;
    }
}
