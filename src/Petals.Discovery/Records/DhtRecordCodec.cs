using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Petals.Discovery;

/// <summary>
/// The compact binary encoding of <see cref="DhtRecord"/>s (little-endian), as carried by STORE and FIND_VALUE:
/// <code>
/// record := u8 version (1) | u16 key length | key (UTF-8) | sub-key (20 bytes) | i64 expiration (Unix ms)
///         | u8 public key length | public key | u8 signature length | signature | u32 value length | value
/// list   := u16 count | record*
/// </code>
/// Decoding checks every length against the remaining input and the <see cref="RecordLimits"/> before allocating, so
/// truncated or hostile input fails with a <see cref="DhtFormatException"/> naming the field, never with a large
/// allocation or another exception type. Thread-safe (stateless).
/// </summary>
internal static class DhtRecordCodec
{
    /// <summary>The format version written in each record's first byte.</summary>
    public const byte Version = 1;

    /// <summary>The size of a record's fixed-size fields.</summary>
    public const int FixedSize = 1 + 2 + NodeId.Size + 8 + 1 + 1 + 4;

    private static readonly long MaxExpirationMilliseconds = DateTimeOffset.MaxValue.ToUnixTimeMilliseconds();

    /// <summary>The encoded size of <paramref name="record"/>.</summary>
    /// <param name="record">The record.</param>
    public static int GetEncodedLength(DhtRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return checked(FixedSize + record.KeyByteCount + record.PublicKey.Length + record.Signature.Length + record.Value.Length);
    }

    /// <summary>Encodes <paramref name="record"/> into a new array.</summary>
    /// <param name="record">The record.</param>
    public static byte[] Encode(DhtRecord record)
    {
        var bytes = new byte[GetEncodedLength(record)];
        Encode(record, bytes);
        return bytes;
    }

    /// <summary>Encodes <paramref name="record"/> into <paramref name="writer"/>.</summary>
    /// <param name="record">The record.</param>
    /// <param name="writer">The destination.</param>
    public static void Encode(DhtRecord record, IBufferWriter<byte> writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var length = GetEncodedLength(record);
        Encode(record, writer.GetSpan(length));
        writer.Advance(length);
    }

    /// <summary>Encodes <paramref name="record"/> into <paramref name="destination"/>.</summary>
    /// <param name="record">The record.</param>
    /// <param name="destination">At least <see cref="GetEncodedLength"/> bytes.</param>
    /// <returns>The number of bytes written.</returns>
    /// <exception cref="ArgumentException">The destination is too small.</exception>
    public static int Encode(DhtRecord record, Span<byte> destination)
    {
        var length = GetEncodedLength(record);
        if (destination.Length < length)
        {
            throw new ArgumentException($"The record needs {length} bytes; the destination has {destination.Length}.", nameof(destination));
        }

        destination[0] = Version;
        var at = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[at..], (ushort)record.KeyByteCount);
        at += 2;
        at += DhtRecord.StrictUtf8.GetBytes(record.Key, destination[at..]);
        record.SubKey.WriteTo(destination[at..]);
        at += NodeId.Size;
        BinaryPrimitives.WriteInt64LittleEndian(destination[at..], record.ExpirationUnixMilliseconds);
        at += 8;
        destination[at++] = (byte)record.PublicKey.Length;
        record.PublicKey.Span.CopyTo(destination[at..]);
        at += record.PublicKey.Length;
        destination[at++] = (byte)record.Signature.Length;
        record.Signature.Span.CopyTo(destination[at..]);
        at += record.Signature.Length;
        BinaryPrimitives.WriteUInt32LittleEndian(destination[at..], (uint)record.Value.Length);
        at += 4;
        record.Value.Span.CopyTo(destination[at..]);
        return at + record.Value.Length;
    }

    /// <summary>Encodes a list of at most 65,535 records into <paramref name="writer"/>.</summary>
    /// <param name="records">The records.</param>
    /// <param name="writer">The destination.</param>
    /// <exception cref="ArgumentException">There are more than 65,535 records.</exception>
    public static void EncodeList(IReadOnlyList<DhtRecord> records, IBufferWriter<byte> writer)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(writer);
        if (records.Count > ushort.MaxValue)
        {
            throw new ArgumentException($"A record list holds at most {ushort.MaxValue} records, not {records.Count}.", nameof(records));
        }

        BinaryPrimitives.WriteUInt16LittleEndian(writer.GetSpan(2), (ushort)records.Count);
        writer.Advance(2);
        for (var i = 0; i < records.Count; i++)
        {
            Encode(records[i], writer);
        }
    }

    /// <summary>Decodes exactly one record occupying all of <paramref name="source"/>.</summary>
    /// <param name="source">The encoded record.</param>
    /// <param name="limits">The key and value size limits; <see cref="RecordLimits.Default"/> when null.</param>
    /// <exception cref="DhtFormatException">The input is truncated, has trailing bytes, or a field is malformed or over its limit.</exception>
    public static DhtRecord Decode(ReadOnlySpan<byte> source, RecordLimits? limits = null)
    {
        var record = Decode(source, limits, out var consumed);
        if (consumed != source.Length)
        {
            throw new DhtFormatException("end of record", consumed, $"{source.Length - consumed} unexpected trailing bytes.");
        }

        return record;
    }

    /// <summary>Decodes one record from the start of <paramref name="source"/>.</summary>
    /// <param name="source">The input, starting with a record.</param>
    /// <param name="limits">The key and value size limits; <see cref="RecordLimits.Default"/> when null.</param>
    /// <param name="consumed">The number of bytes the record occupied.</param>
    /// <exception cref="DhtFormatException">The input is truncated or a field is malformed or over its limit.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A limit is out of range.</exception>
    public static DhtRecord Decode(ReadOnlySpan<byte> source, RecordLimits? limits, out int consumed)
    {
        limits ??= RecordLimits.Default;
        limits.Validate();
        var at = 0;
        var record = Read(source, ref at, 0, limits);
        consumed = at;
        return record;
    }

    /// <summary>Decodes a list written by <see cref="EncodeList"/> occupying all of <paramref name="source"/>.</summary>
    /// <param name="source">The encoded list.</param>
    /// <param name="maxRecords">The most records accepted.</param>
    /// <param name="limits">The key and value size limits; <see cref="RecordLimits.Default"/> when null.</param>
    /// <exception cref="DhtFormatException">The input is truncated, has trailing bytes, holds more than <paramref name="maxRecords"/> records, or a record is malformed.</exception>
    public static IReadOnlyList<DhtRecord> DecodeList(ReadOnlySpan<byte> source, int maxRecords, RecordLimits? limits = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxRecords);
        limits ??= RecordLimits.Default;
        limits.Validate();
        Require(source, 0, 2, "record count");
        var count = BinaryPrimitives.ReadUInt16LittleEndian(source);
        if (count > maxRecords)
        {
            throw new DhtFormatException("record count", 0, $"{count} records; at most {maxRecords} are accepted.");
        }

        // Every record takes at least FixedSize + 1 bytes, so a count the input cannot hold is refused before the list is allocated.
        if ((long)count * (FixedSize + 1) > source.Length - 2)
        {
            throw new DhtFormatException("record count", 0, $"{count} records cannot fit in the remaining {source.Length - 2} bytes.");
        }

        var records = new DhtRecord[count];
        var at = 2;
        for (var i = 0; i < count; i++)
        {
            records[i] = Read(source, ref at, i, limits);
        }

        if (at != source.Length)
        {
            throw new DhtFormatException("end of list", at, $"{source.Length - at} unexpected trailing bytes after {count} records.");
        }

        return records;
    }

    private static DhtRecord Read(ReadOnlySpan<byte> source, ref int at, int index, RecordLimits limits)
    {
        var prefix = index == 0 ? string.Empty : $"record {index} ";
        Require(source, at, 1, prefix + "version");
        if (source[at] != Version)
        {
            throw new DhtFormatException(prefix + "version", at, $"version {source[at]} is not supported (expected {Version}).");
        }

        at++;
        Require(source, at, 2, prefix + "key length");
        int keyLength = BinaryPrimitives.ReadUInt16LittleEndian(source[at..]);
        if (keyLength == 0 || keyLength > limits.MaxKeyBytes)
        {
            throw new DhtFormatException(prefix + "key length", at, $"{keyLength} bytes; a key is 1 to {limits.MaxKeyBytes} bytes.");
        }

        at += 2;
        Require(source, at, keyLength, prefix + "key");
        string key;
        try
        {
            key = DhtRecord.StrictUtf8.GetString(source.Slice(at, keyLength));
        }
        catch (DecoderFallbackException e)
        {
            throw new DhtFormatException($"DHT record encoding: {prefix}key at offset {at}: not valid UTF-8.", e);
        }

        at += keyLength;
        Require(source, at, NodeId.Size, prefix + "sub-key");
        var subKey = NodeId.FromBytes(source.Slice(at, NodeId.Size));
        at += NodeId.Size;
        Require(source, at, 8, prefix + "expiration");
        var expiration = BinaryPrimitives.ReadInt64LittleEndian(source[at..]);
        if (expiration < 0 || expiration > MaxExpirationMilliseconds)
        {
            throw new DhtFormatException(prefix + "expiration", at, $"{expiration} ms is not a representable time after the Unix epoch.");
        }

        at += 8;
        var publicKey = ReadSmall(source, ref at, DhtRecord.MaxPublicKeyBytes, prefix + "public key");
        var signature = ReadSmall(source, ref at, DhtRecord.MaxSignatureBytes, prefix + "signature");
        Require(source, at, 4, prefix + "value length");
        var valueLength = BinaryPrimitives.ReadUInt32LittleEndian(source[at..]);
        if (valueLength > (uint)limits.MaxValueBytes)
        {
            throw new DhtFormatException(prefix + "value length", at, $"{valueLength} bytes; at most {limits.MaxValueBytes}.");
        }

        at += 4;
        Require(source, at, (int)valueLength, prefix + "value");
        var value = source.Slice(at, (int)valueLength).ToArray();
        at += (int)valueLength;
        return new DhtRecord(key, subKey, value, DateTimeOffset.FromUnixTimeMilliseconds(expiration), publicKey, signature);
    }

    private static byte[] ReadSmall(ReadOnlySpan<byte> source, ref int at, int max, string field)
    {
        Require(source, at, 1, field + " length");
        var length = source[at];
        if (length > max)
        {
            throw new DhtFormatException(field + " length", at, $"{length} bytes; at most {max}.");
        }

        at++;
        Require(source, at, length, field);
        var bytes = source.Slice(at, length).ToArray();
        at += length;
        return bytes;
    }

    private static void Require(ReadOnlySpan<byte> source, int at, int length, string field)
    {
        if (source.Length - at < length)
        {
            throw new DhtFormatException(field, at, $"truncated: {length} bytes needed, {source.Length - at} left.");
        }
    }
}
