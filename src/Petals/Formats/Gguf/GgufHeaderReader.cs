using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Petals.Formats.Gguf;

/// <summary>
/// Bounds-checked little-endian reader over the mapped header of a GGUF file. Every count and length is checked
/// against the bytes left in the file before anything is allocated.
/// </summary>
internal sealed unsafe class GgufHeaderReader(MappedFile file, int version)
{
    /// <summary>Arrays nested deeper than this are rejected (the format has no use for them; it bounds recursion).</summary>
    public const int MaxArrayDepth = 8;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public long Position { get; set; }

    public long Remaining => file.Length - Position;

    public ModelFormatException Error(string? field, string message) => new(file.Path, field, message);

    public ReadOnlySpan<byte> Take(int count, string field)
    {
        if (count < 0 || count > Remaining)
        {
            throw Error(field, string.Create(CultureInfo.InvariantCulture, $"the file ends at byte {file.Length}; {count} more bytes were expected at offset {Position} (truncated file?)."));
        }

        var span = new ReadOnlySpan<byte>(file.Pointer(Position), count);
        Position += count;
        return span;
    }

    public byte ReadU8(string field) => Take(1, field)[0];

    public ushort ReadU16(string field) => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, field));

    public uint ReadU32(string field) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, field));

    public ulong ReadU64(string field) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, field));

    /// <summary>Reads a count (u32 in v1, u64 later) and checks that <paramref name="minBytesPerItem"/> bytes per item fit in the file.</summary>
    public int ReadCount(string field, long minBytesPerItem)
    {
        var start = Position;
        var count = version == 1 ? ReadU32(field) : ReadU64(field);
        var fits = minBytesPerItem <= 0 ? (ulong)Remaining : (ulong)(Remaining / minBytesPerItem);
        if (count > fits || count > int.MaxValue)
        {
            throw Error(field, string.Create(CultureInfo.InvariantCulture, $"count {count} at offset {start} cannot fit in the {Remaining} bytes left in the file."));
        }

        return (int)count;
    }

    public int CountSize => version == 1 ? 4 : 8;

    public string ReadString(string field)
    {
        var start = Position;
        var length = version == 1 ? ReadU32(field) : ReadU64(field);
        if (length > (ulong)Remaining || length > int.MaxValue)
        {
            throw Error(field, string.Create(CultureInfo.InvariantCulture, $"string length {length} at offset {start} runs past the end of the file ({file.Length} bytes)."));
        }

        var bytes = Take((int)length, field);
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException ex)
        {
            throw new ModelFormatException(file.Path, field, string.Create(CultureInfo.InvariantCulture, $"string at offset {start} is not valid UTF-8."), ex);
        }
    }

    public GgufValueType ReadType(string field)
    {
        var start = Position;
        var raw = ReadU32(field);
        if (raw > (uint)GgufValueType.Float64)
        {
            throw Error(field, string.Create(CultureInfo.InvariantCulture, $"unknown metadata value type {raw} at offset {start}."));
        }

        return (GgufValueType)raw;
    }

    public GgufMetadataValue ReadValue(GgufValueType type, string field, int depth)
    {
        return type switch
        {
            GgufValueType.UInt8 => new(type, ReadU8(field)),
            GgufValueType.Int8 => new(type, (sbyte)ReadU8(field)),
            GgufValueType.UInt16 => new(type, ReadU16(field)),
            GgufValueType.Int16 => new(type, (short)ReadU16(field)),
            GgufValueType.UInt32 => new(type, ReadU32(field)),
            GgufValueType.Int32 => new(type, (int)ReadU32(field)),
            GgufValueType.Float32 => new(type, BitConverter.UInt32BitsToSingle(ReadU32(field))),
            GgufValueType.Bool => new(type, ReadBool(field)),
            GgufValueType.String => new(type, ReadString(field)),
            GgufValueType.UInt64 => new(type, ReadU64(field)),
            GgufValueType.Int64 => new(type, (long)ReadU64(field)),
            GgufValueType.Float64 => new(type, BitConverter.UInt64BitsToDouble(ReadU64(field))),
            GgufValueType.Array => ReadArray(field, depth),
            _ => throw Error(field, $"unknown metadata value type {type}."),
        };
    }

    private bool ReadBool(string field)
    {
        var start = Position;
        var b = ReadU8(field);
        return b switch
        {
            0 => false,
            1 => true,
            _ => throw Error(field, string.Create(CultureInfo.InvariantCulture, $"boolean at offset {start} has value {b}, not 0 or 1.")),
        };
    }

    private GgufMetadataValue ReadArray(string field, int depth)
    {
        if (depth >= MaxArrayDepth)
        {
            throw Error(field, string.Create(CultureInfo.InvariantCulture, $"arrays are nested more than {MaxArrayDepth} deep."));
        }

        var elementType = ReadType(field);
        var minSize = elementType switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
            GgufValueType.String => CountSize,
            _ => 4 + CountSize,
        };
        var count = ReadCount(field, minSize);
        object value;
        switch (elementType)
        {
            case GgufValueType.UInt8:
                value = Take(count, field).ToArray();
                break;
            case GgufValueType.Int8:
            {
                var a = new sbyte[count];
                Take(count, field).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()));
                value = a;
                break;
            }

            case GgufValueType.UInt16:
                value = Fill(new ushort[count], i => ReadU16(field));
                break;
            case GgufValueType.Int16:
                value = Fill(new short[count], i => (short)ReadU16(field));
                break;
            case GgufValueType.UInt32:
                value = Fill(new uint[count], i => ReadU32(field));
                break;
            case GgufValueType.Int32:
                value = Fill(new int[count], i => (int)ReadU32(field));
                break;
            case GgufValueType.Float32:
                value = Fill(new float[count], i => BitConverter.UInt32BitsToSingle(ReadU32(field)));
                break;
            case GgufValueType.UInt64:
                value = Fill(new ulong[count], i => ReadU64(field));
                break;
            case GgufValueType.Int64:
                value = Fill(new long[count], i => (long)ReadU64(field));
                break;
            case GgufValueType.Float64:
                value = Fill(new double[count], i => BitConverter.UInt64BitsToDouble(ReadU64(field)));
                break;
            case GgufValueType.Bool:
                value = Fill(new bool[count], i => ReadBool(field));
                break;
            case GgufValueType.String:
                value = Fill(new string[count], i => ReadString(field));
                break;
            default:
                value = Fill(new GgufMetadataValue[count], i => ReadArray(field, depth + 1));
                break;
        }

        return new GgufMetadataValue(GgufValueType.Array, value, elementType);
    }

    private static T[] Fill<T>(T[] array, Func<int, T> read)
    {
        for (var i = 0; i < array.Length; i++)
        {
            array[i] = read(i);
        }

        return array;
    }
}
