using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Petals.Models;

namespace Petals.Protocol;

/// <summary>
/// Reads message fields little-endian with strict validation: every length is checked against the remaining bytes and
/// the configured limits before anything is allocated; errors name the frame type, stream and field.
/// </summary>
internal ref struct WireReader
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly ReadOnlyMemory<byte> _payload;
    private readonly ReadOnlySpan<byte> _span;
    private readonly ProtocolLimits _limits;
    private readonly FrameType _type;
    private readonly uint _streamId;
    private int _offset;

    public WireReader(ReadOnlyMemory<byte> payload, ProtocolLimits limits, FrameType type, uint streamId)
    {
        _payload = payload;
        _span = payload.Span;
        _limits = limits;
        _type = type;
        _streamId = streamId;
    }

    public readonly int Remaining => _span.Length - _offset;

    public readonly ProtocolException Error(ProtocolErrorCode code, string field, string detail) =>
        new(code, string.Create(CultureInfo.InvariantCulture, $"{_type} frame on stream {_streamId}: field '{field}' {detail}")) { StreamId = _streamId };

    public byte U8(string field)
    {
        Need(1, field);
        return _span[_offset++];
    }

    public ushort U16(string field)
    {
        Need(2, field);
        var value = BinaryPrimitives.ReadUInt16LittleEndian(_span[_offset..]);
        _offset += 2;
        return value;
    }

    public uint U32(string field)
    {
        Need(4, field);
        var value = BinaryPrimitives.ReadUInt32LittleEndian(_span[_offset..]);
        _offset += 4;
        return value;
    }

    public ulong U64(string field)
    {
        Need(8, field);
        var value = BinaryPrimitives.ReadUInt64LittleEndian(_span[_offset..]);
        _offset += 8;
        return value;
    }

    /// <summary>A u32 that must fit a non-negative <see cref="int"/>.</summary>
    public int Count(string field)
    {
        var value = U32(field);
        if (value > int.MaxValue)
        {
            throw Error(ProtocolErrorCode.MalformedFrame, field, string.Create(CultureInfo.InvariantCulture, $"is {value}, above {int.MaxValue}."));
        }

        return (int)value;
    }

    public int I32(string field)
    {
        Need(4, field);
        var value = BinaryPrimitives.ReadInt32LittleEndian(_span[_offset..]);
        _offset += 4;
        return value;
    }

    public Guid Guid(string field)
    {
        Need(16, field);
        var value = new Guid(_span.Slice(_offset, 16));
        _offset += 16;
        return value;
    }

    public BlockRange Blocks(string field)
    {
        var start = Count(field);
        var end = Count(field);
        if (end <= start)
        {
            throw Error(ProtocolErrorCode.MalformedFrame, field, string.Create(CultureInfo.InvariantCulture, $"is {start}:{end}; the start must be below the end."));
        }

        return new BlockRange(start, end);
    }

    public WireCodec Codec(string field)
    {
        var code = U8(field);
        if (!HiddenStateCodec.IsDefined(code))
        {
            throw Error(ProtocolErrorCode.BadDType, field, string.Create(CultureInfo.InvariantCulture, $"is codec {code}; known codecs are 0 (fp32), 1 (fp16), 2 (bf16) and 3 (int8 blockwise)."));
        }

        return (WireCodec)code;
    }

    public string String(string field)
    {
        var length = U16(field);
        if (length > _limits.MaxStringBytes)
        {
            throw Error(ProtocolErrorCode.StringTooLong, field, string.Create(CultureInfo.InvariantCulture, $"is {length} bytes long; the limit is {_limits.MaxStringBytes}."));
        }

        Need(length, field);
        string value;
        try
        {
            value = StrictUtf8.GetString(_span.Slice(_offset, length));
        }
        catch (DecoderFallbackException ex)
        {
            throw new ProtocolException(ProtocolErrorCode.InvalidUtf8, $"{_type} frame on stream {_streamId}: field '{field}' is not valid UTF-8.", ex) { StreamId = _streamId };
        }

        _offset += length;
        return value;
    }

    public WireTensor Tensor(string field)
    {
        var codec = Codec(field);
        var rank = U8(field);
        if (rank is < 1 or > TensorShape.MaxRank)
        {
            throw Error(ProtocolErrorCode.BadShape, field, string.Create(CultureInfo.InvariantCulture, $"has rank {rank}; it must be 1 to {TensorShape.MaxRank}."));
        }

        Span<int> dims = stackalloc int[TensorShape.MaxRank];
        long count = 1;
        for (var i = 0; i < rank; i++)
        {
            var dim = U32(field);
            if (dim == 0)
            {
                throw Error(ProtocolErrorCode.BadShape, field, string.Create(CultureInfo.InvariantCulture, $"has dimension {i} equal to 0."));
            }

            // Both factors are below 2^32 and the running product is kept below the limit (every codec takes at least a
            // byte per element), so this cannot overflow 64 bits.
            count *= dim;
            if (count > _limits.MaxMessageSize || HiddenStateCodec.PayloadBytes(codec, count) > _limits.MaxMessageSize)
            {
                throw Error(ProtocolErrorCode.ShapeOverflow, field, string.Create(CultureInfo.InvariantCulture, $"has dimensions that describe more than {_limits.MaxMessageSize} bytes (the message limit) after dimension {i}."));
            }

            dims[i] = (int)dim;
        }

        var bytes = (int)HiddenStateCodec.PayloadBytes(codec, count);
        Need(bytes, field);
        if (codec == WireCodec.Int8Blockwise && Int8BlockwiseCodec.IndexOfBadScale(_span.Slice(_offset, bytes), (int)count, out var scale) is var block and >= 0)
        {
            throw Error(ProtocolErrorCode.MalformedFrame, field, string.Create(CultureInfo.InvariantCulture, $"has int8 block {block} (elements {(long)block * Int8BlockwiseCodec.BlockSize} on) with scale {scale}; a block scale is finite, at least 0 and at most {Int8BlockwiseCodec.MaxScale}."));
        }

        var tensor = WireTensor.FromEncoded(new TensorShape(dims[..rank]), codec, _payload.Slice(_offset, bytes));
        _offset += bytes;
        return tensor;
    }

    public readonly void End()
    {
        if (Remaining != 0)
        {
            throw new ProtocolException(ProtocolErrorCode.TrailingBytes, string.Create(CultureInfo.InvariantCulture, $"{_type} frame on stream {_streamId}: {Remaining} bytes are left after the last field.")) { StreamId = _streamId };
        }
    }

    private readonly void Need(int bytes, string field)
    {
        if (bytes > Remaining)
        {
            throw Error(ProtocolErrorCode.Truncated, field, string.Create(CultureInfo.InvariantCulture, $"needs {bytes} bytes at offset {_offset} but only {Remaining} remain."));
        }
    }
}
