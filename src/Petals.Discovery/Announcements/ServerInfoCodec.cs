using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Petals.Models;
using Petals.Tensors;
using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// The value encodings of the discovery records (little-endian; docs/dht-protocol.md, "Announcements"):
/// <code>
/// server info := u8 version (1) | u8 state | i32 span start | i32 span end | f64 throughput | i64 cache tokens left
///              | u8 dtype | u16 address length | address (UTF-8) | u8 version length | version | u8 has name
///              | [u8 name length | name] | u8 rtt count | (u8 peer id length | peer id | f64 rtt ms)*
///              | [u8 has throughput method | [u8 length | throughput method]]   (optional trailing field; unreadable: ignored)
///              | [u8 has quantization (1) | u8 length | quantization (ASCII a-z 0-9 _ +)]   (optional trailing field, after
///                the throughput method's presence byte, which is then written even when it is 0)
///              | [u8 has adapters (1) | u8 count (1..32) | (u8 length | adapter name (ASCII letters, digits, _ - .))*]   (optional trailing
///                field, after the quantization's presence byte, which is then written even when it is 0)
/// model entry := u8 version (1) | u16 model id length | model id (UTF-8) | i32 block count (1..MaxBlockCount)
/// </code>
/// Compatibility: the trailing fields are optional, so records of servers that predate them decode (as null), and readers
/// that predate them stop after the fields they know and ignore the rest, so new records decode there too (without the
/// quantization or adapters). A quantization that is present must be valid (<see cref="AnnouncementLimits.IsValidQuantization"/>),
/// and so must adapters (<see cref="AnnouncementLimits.IsValidAdapterList"/>): clients route by both.
/// The peer id and the expiration are not encoded: they are the record's sub-key and expiration, which the signature
/// covers. Decoding checks every length against the input and the limits below and throws
/// <see cref="DhtFormatException"/> naming the field; bytes after the known fields are ignored, so later versions can
/// append fields. Thread-safe (stateless).
/// </summary>
public static class ServerInfoCodec
{
    /// <summary>The format version written first.</summary>
    public const byte Version = 1;

    /// <summary>The longest address, in UTF-8 bytes.</summary>
    public const int MaxAddressBytes = 512;

    /// <summary>The longest software version and public name, in UTF-8 bytes.</summary>
    public const int MaxTextBytes = 128;

    /// <summary>The most round-trip times one announcement carries.</summary>
    public const int MaxRtts = 32;

    /// <summary>The longest peer id in the round-trip table, in UTF-8 bytes.</summary>
    public const int MaxPeerIdBytes = 64;

    /// <summary>The longest announced quantization, in bytes (<see cref="AnnouncementLimits.MaxQuantizationBytes"/>).</summary>
    public const int MaxQuantizationBytes = AnnouncementLimits.MaxQuantizationBytes;

    /// <summary>The most adapter names one announcement carries (<see cref="AnnouncementLimits.MaxAdapters"/>).</summary>
    public const int MaxAdapters = AnnouncementLimits.MaxAdapters;

    /// <summary>The longest adapter name, in bytes (<see cref="AnnouncementLimits.MaxAdapterNameBytes"/>).</summary>
    public const int MaxAdapterNameBytes = AnnouncementLimits.MaxAdapterNameBytes;

    /// <summary>The longest model id, in UTF-8 bytes (<see cref="AnnouncementLimits.MaxModelIdBytes"/>).</summary>
    public const int MaxModelIdBytes = AnnouncementLimits.MaxModelIdBytes;

    /// <summary>The largest block count of a model entry (<see cref="AnnouncementLimits.MaxBlockCount"/>).</summary>
    public const int MaxBlockCount = AnnouncementLimits.MaxBlockCount;

    private static readonly double MaxRttMilliseconds = TimeSpan.MaxValue.TotalMilliseconds / 2;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Encodes <paramref name="info"/> (without its peer id and expiration).</summary>
    /// <param name="info">The announcement.</param>
    /// <returns>The encoded value.</returns>
    /// <exception cref="ArgumentException">A field is over its limit, the state or dtype is undefined, or a round-trip time is negative or too large to decode.</exception>
    public static byte[] Encode(ServerInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (!Enum.IsDefined(info.State))
        {
            throw new ArgumentException($"Server state {(int)info.State} is not defined.", nameof(info));
        }

        if (!Enum.IsDefined(info.DType))
        {
            throw new ArgumentException($"DType {(int)info.DType} is not defined.", nameof(info));
        }

        if (info.Address.IsEmpty)
        {
            throw new ArgumentException("The server address is empty.", nameof(info));
        }

        if (!double.IsFinite(info.Throughput) || info.Throughput < 0)
        {
            throw new ArgumentException($"Throughput {info.Throughput.ToString(CultureInfo.InvariantCulture)} is not a finite non-negative number.", nameof(info));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(info.CacheTokensLeft, "info.CacheTokensLeft");
        var address = Utf8(info.Address.ToString(), MaxAddressBytes, "address");
        var version = Utf8(info.Version ?? string.Empty, MaxTextBytes, "version");
        var name = info.PublicName is null ? null : Utf8(info.PublicName, MaxTextBytes, "public name");
        var method = info.ThroughputMethod is null ? null : Utf8(info.ThroughputMethod, MaxTextBytes, "throughput method");
        if (info.Quantization is not null && !AnnouncementLimits.IsValidQuantization(info.Quantization, out var quantizationFault))
        {
            throw new ArgumentException($"The announcement is invalid: {quantizationFault}", nameof(info));
        }

        var quantization = info.Quantization is null ? null : Encoding.ASCII.GetBytes(info.Quantization);
        if (!AnnouncementLimits.IsValidAdapterList(info.Adapters, out var adapterFault))
        {
            throw new ArgumentException($"The announcement is invalid: {adapterFault}", nameof(info));
        }

        var adapters = info.Adapters is { Count: > 0 } list ? list.Select(Encoding.ASCII.GetBytes).ToArray() : null;
        var rtts = info.NextServerRtts ?? new Dictionary<string, TimeSpan>();
        if (rtts.Count > MaxRtts)
        {
            throw new ArgumentException($"{rtts.Count} round-trip times; an announcement carries at most {MaxRtts}.", nameof(info));
        }

        var rttEntries = new List<(byte[] Id, double Ms)>(rtts.Count);
        foreach (var (peer, rtt) in rtts.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (rtt < TimeSpan.Zero)
            {
                throw new ArgumentException($"The round-trip time to {peer} is negative.", nameof(info));
            }

            if (rtt.TotalMilliseconds > MaxRttMilliseconds)
            {
                // Decode refuses it: the record would be written, then skipped as malformed by every reader.
                throw new ArgumentException($"The round-trip time to {peer} ({rtt}) is over the largest one a record carries ({TimeSpan.FromMilliseconds(MaxRttMilliseconds)}).", nameof(info));
            }

            rttEntries.Add((Utf8(peer, MaxPeerIdBytes, "round-trip peer id"), rtt.TotalMilliseconds));
        }

        var length = 1 + 1 + 4 + 4 + 8 + 8 + 1 + 2 + address.Length + 1 + version.Length + 1 + (name is null ? 0 : 1 + name.Length) + 1
            + rttEntries.Sum(e => 1 + e.Id.Length + 8) + (method is null ? (quantization is null && adapters is null ? 0 : 1) : 1 + 1 + method.Length)
            + (quantization is null ? (adapters is null ? 0 : 1) : 1 + 1 + quantization.Length)
            + (adapters is null ? 0 : 1 + 1 + adapters.Sum(a => 1 + a.Length));
        var bytes = new byte[length];
        var span = bytes.AsSpan();
        var at = 0;
        span[at++] = Version;
        span[at++] = (byte)info.State;
        BinaryPrimitives.WriteInt32LittleEndian(span[at..], info.Span.Start);
        at += 4;
        BinaryPrimitives.WriteInt32LittleEndian(span[at..], info.Span.End);
        at += 4;
        BinaryPrimitives.WriteDoubleLittleEndian(span[at..], info.Throughput);
        at += 8;
        BinaryPrimitives.WriteInt64LittleEndian(span[at..], info.CacheTokensLeft);
        at += 8;
        span[at++] = (byte)info.DType;
        BinaryPrimitives.WriteUInt16LittleEndian(span[at..], (ushort)address.Length);
        at += 2;
        address.CopyTo(span[at..]);
        at += address.Length;
        at = WriteSmall(span, at, version);
        span[at++] = name is null ? (byte)0 : (byte)1;
        if (name is not null)
        {
            at = WriteSmall(span, at, name);
        }

        span[at++] = (byte)rttEntries.Count;
        foreach (var (id, ms) in rttEntries)
        {
            at = WriteSmall(span, at, id);
            BinaryPrimitives.WriteDoubleLittleEndian(span[at..], ms);
            at += 8;
        }

        if (method is not null)
        {
            // Appended after every version-1 field: version-1 readers stop before it and ignore it.
            span[at++] = 1;
            at = WriteSmall(span, at, method);
        }
        else if (quantization is not null || adapters is not null)
        {
            span[at++] = 0; // the method's presence byte, so that the later fields' positions are fixed
        }

        if (quantization is not null)
        {
            span[at++] = 1;
            at = WriteSmall(span, at, quantization);
        }
        else if (adapters is not null)
        {
            span[at++] = 0; // the quantization's presence byte, so that the adapters' position is fixed
        }

        if (adapters is not null)
        {
            span[at++] = 1;
            span[at++] = (byte)adapters.Length;
            foreach (var a in adapters)
            {
                at = WriteSmall(span, at, a);
            }
        }

        return bytes;
    }

    /// <summary>Decodes an announcement.</summary>
    /// <param name="source">The encoded value.</param>
    /// <param name="peerId">The announcing peer (the record's sub-key).</param>
    /// <param name="expiresAt">The record's expiration.</param>
    /// <returns>The announcement.</returns>
    /// <exception cref="DhtFormatException">The input is truncated or a field is malformed or over its limit.</exception>
    public static ServerInfo Decode(ReadOnlySpan<byte> source, string peerId, DateTimeOffset expiresAt)
    {
        ArgumentNullException.ThrowIfNull(peerId);
        var at = 0;
        ReadVersion(source, ref at, "server info");
        Require(source, at, 1, "state");
        var state = (ServerState)source[at];
        if (!Enum.IsDefined(state))
        {
            throw new DhtFormatException("state", at, $"state {source[at]} is not defined.");
        }

        at++;
        Require(source, at, 8, "span");
        var start = BinaryPrimitives.ReadInt32LittleEndian(source[at..]);
        var end = BinaryPrimitives.ReadInt32LittleEndian(source[(at + 4)..]);
        if (start < 0 || end <= start)
        {
            throw new DhtFormatException("span", at, $"{start}:{end} is not a block range (0 <= start < end).");
        }

        at += 8;
        Require(source, at, 8, "throughput");
        var throughput = BinaryPrimitives.ReadDoubleLittleEndian(source[at..]);
        if (!double.IsFinite(throughput) || throughput < 0)
        {
            throw new DhtFormatException("throughput", at, $"{throughput.ToString(CultureInfo.InvariantCulture)} is not a finite non-negative number.");
        }

        at += 8;
        Require(source, at, 8, "cache tokens left");
        var cacheLeft = BinaryPrimitives.ReadInt64LittleEndian(source[at..]);
        if (cacheLeft < 0)
        {
            throw new DhtFormatException("cache tokens left", at, $"{cacheLeft} is negative.");
        }

        at += 8;
        Require(source, at, 1, "dtype");
        var dtype = (TensorDType)source[at];
        if (!Enum.IsDefined(dtype))
        {
            throw new DhtFormatException("dtype", at, $"dtype {source[at]} is not defined.");
        }

        at++;
        Require(source, at, 2, "address length");
        int addressLength = BinaryPrimitives.ReadUInt16LittleEndian(source[at..]);
        if (addressLength == 0 || addressLength > MaxAddressBytes)
        {
            throw new DhtFormatException("address length", at, $"{addressLength} bytes; an address is 1 to {MaxAddressBytes} bytes.");
        }

        at += 2;
        var addressText = ReadText(source, ref at, addressLength, "address");
        PeerAddress address;
        try
        {
            address = PeerAddress.Parse(addressText);
        }
        catch (FormatException e)
        {
            throw new DhtFormatException("address", at - addressLength, e.Message);
        }

        var version = ReadSmallText(source, ref at, MaxTextBytes, "version");
        Require(source, at, 1, "has name");
        var hasName = source[at];
        if (hasName > 1)
        {
            throw new DhtFormatException("has name", at, $"{hasName} is not 0 or 1.");
        }

        at++;
        var name = hasName == 1 ? ReadSmallText(source, ref at, MaxTextBytes, "public name") : null;
        Require(source, at, 1, "rtt count");
        var count = source[at];
        if (count > MaxRtts)
        {
            throw new DhtFormatException("rtt count", at, $"{count} round-trip times; at most {MaxRtts}.");
        }

        at++;
        var rtts = new Dictionary<string, TimeSpan>(count, StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var field = string.Create(CultureInfo.InvariantCulture, $"rtt {i}");
            var peer = ReadSmallText(source, ref at, MaxPeerIdBytes, field + " peer id");
            Require(source, at, 8, field + " value");
            var ms = BinaryPrimitives.ReadDoubleLittleEndian(source[at..]);
            if (!double.IsFinite(ms) || ms < 0 || ms > MaxRttMilliseconds)
            {
                throw new DhtFormatException(field + " value", at, $"{ms.ToString(CultureInfo.InvariantCulture)} ms is not a valid round-trip time.");
            }

            if (!rtts.TryAdd(peer, TimeSpan.FromMilliseconds(ms)))
            {
                throw new DhtFormatException(field + " peer id", at, $"peer '{peer}' appears twice.");
            }

            at += 8;
        }

        // Optional trailing field: absent in records of servers that predate it. Trailing bytes that do not read as it
        // are ignored like any later field, so the record still decodes (a later version may append something else).
        string? method = null;
        string? quantization = null;
        IReadOnlyList<string> adapters = [];
        if (at < source.Length && source[at] <= 1)
        {
            var fieldAt = at + 1;
            var readable = true;
            if (source[at] == 1)
            {
                try
                {
                    method = ReadSmallText(source, ref fieldAt, MaxTextBytes, "throughput method");
                }
                catch (DhtFormatException)
                {
                    method = null;
                    readable = false;
                }
            }

            // The quantization follows the method's field. Present (1) means it must be valid: a client that requires a
            // quantization routes by it, so a malformed one is refused rather than read as "not stated".
            if (readable && fieldAt < source.Length && source[fieldAt] == 1)
            {
                fieldAt++;
                quantization = ReadSmallText(source, ref fieldAt, MaxQuantizationBytes, "quantization");
                if (!AnnouncementLimits.IsValidQuantization(quantization, out var fault))
                {
                    throw new DhtFormatException("quantization", fieldAt - Encoding.UTF8.GetByteCount(quantization), fault!);
                }
            }
            else if (readable && fieldAt < source.Length && source[fieldAt] == 0)
            {
                fieldAt++;
            }
            else
            {
                readable = false;
            }

            // The adapters follow the quantization's field. Present (1) means they must be valid: a client that names an
            // adapter is routed by them. Any other byte is a later version's field, ignored.
            if (readable && fieldAt < source.Length && source[fieldAt] == 1)
            {
                fieldAt++;
                Require(source, fieldAt, 1, "adapter count");
                adapters = ReadAdapters(source, ref fieldAt);
            }
        }

        return new ServerInfo
        {
            PeerId = peerId,
            Address = address,
            State = state,
            Span = new BlockRange(start, end),
            Throughput = throughput,
            CacheTokensLeft = cacheLeft,
            DType = dtype,
            Version = version,
            PublicName = name,
            ThroughputMethod = method,
            Quantization = quantization,
            Adapters = adapters,
            NextServerRtts = rtts,
            ExpiresAt = expiresAt,
        };
    }

    /// <summary>Encodes a model index entry.</summary>
    /// <param name="modelId">The model id, 1 to <see cref="MaxModelIdBytes"/> UTF-8 bytes.</param>
    /// <param name="blockCount">The model's number of blocks (1 to <see cref="MaxBlockCount"/>).</param>
    /// <returns>The encoded value.</returns>
    /// <exception cref="ArgumentException">The model id is empty or too long, or the block count is not between 1 and <see cref="MaxBlockCount"/>.</exception>
    public static byte[] EncodeModelEntry(string modelId, int blockCount)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(blockCount, MaxBlockCount);
        var id = Utf8(modelId, MaxModelIdBytes, "model id");
        var bytes = new byte[1 + 2 + id.Length + 4];
        bytes[0] = Version;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(1), (ushort)id.Length);
        id.CopyTo(bytes, 3);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(3 + id.Length), blockCount);
        return bytes;
    }

    /// <summary>Decodes a model index entry.</summary>
    /// <param name="source">The encoded value.</param>
    /// <returns>The model id and block count.</returns>
    /// <exception cref="DhtFormatException">The input is truncated or a field is malformed or over its limit.</exception>
    public static (string ModelId, int BlockCount) DecodeModelEntry(ReadOnlySpan<byte> source)
    {
        var at = 0;
        ReadVersion(source, ref at, "model entry");
        Require(source, at, 2, "model id length");
        int length = BinaryPrimitives.ReadUInt16LittleEndian(source[at..]);
        if (length == 0 || length > MaxModelIdBytes)
        {
            throw new DhtFormatException("model id length", at, $"{length} bytes; a model id is 1 to {MaxModelIdBytes} bytes.");
        }

        at += 2;
        var modelId = ReadText(source, ref at, length, "model id");
        Require(source, at, 4, "block count");
        var blockCount = BinaryPrimitives.ReadInt32LittleEndian(source[at..]);
        if (blockCount <= 0 || blockCount > MaxBlockCount)
        {
            throw new DhtFormatException("block count", at, $"{blockCount} is not a number of blocks from 1 to {MaxBlockCount}.");
        }

        return (modelId, blockCount);
    }

    private static string[] ReadAdapters(ReadOnlySpan<byte> source, ref int at)
    {
        var countAt = at;
        var count = source[at++];
        if (count is 0 or > MaxAdapters)
        {
            throw new DhtFormatException("adapter count", countAt, string.Create(CultureInfo.InvariantCulture, $"{count} adapters; a present adapter list holds 1 to {MaxAdapters}."));
        }

        var names = new string[count];
        for (var i = 0; i < count; i++)
        {
            var field = string.Create(CultureInfo.InvariantCulture, $"adapter {i}");
            var nameAt = at;
            names[i] = ReadSmallText(source, ref at, MaxAdapterNameBytes, field);
            if (!AnnouncementLimits.IsValidAdapterName(names[i], out var fault))
            {
                throw new DhtFormatException(field, nameAt, fault!);
            }
        }

        if (!AnnouncementLimits.IsValidAdapterList(names, out var listFault))
        {
            throw new DhtFormatException("adapters", countAt, listFault!);
        }

        return names;
    }

    private static byte[] Utf8(string text, int maxBytes, string field)
    {
        var bytes = StrictUtf8.GetBytes(text);
        return bytes.Length <= maxBytes
            ? bytes
            : throw new ArgumentException($"The {field} is {bytes.Length} UTF-8 bytes; at most {maxBytes}.", nameof(text));
    }

    private static int WriteSmall(Span<byte> span, int at, byte[] bytes)
    {
        span[at++] = (byte)bytes.Length;
        bytes.CopyTo(span[at..]);
        return at + bytes.Length;
    }

    private static void ReadVersion(ReadOnlySpan<byte> source, ref int at, string what)
    {
        Require(source, at, 1, "version");
        if (source[at] != Version)
        {
            throw new DhtFormatException("version", at, $"{what} version {source[at]} is not supported (expected {Version}).");
        }

        at++;
    }

    private static string ReadSmallText(ReadOnlySpan<byte> source, ref int at, int maxBytes, string field)
    {
        Require(source, at, 1, field + " length");
        var length = source[at];
        if (length > maxBytes)
        {
            throw new DhtFormatException(field + " length", at, $"{length} bytes; at most {maxBytes}.");
        }

        at++;
        return ReadText(source, ref at, length, field);
    }

    private static string ReadText(ReadOnlySpan<byte> source, ref int at, int length, string field)
    {
        Require(source, at, length, field);
        try
        {
            var text = StrictUtf8.GetString(source.Slice(at, length));
            at += length;
            return text;
        }
        catch (DecoderFallbackException e)
        {
            throw new DhtFormatException($"DHT record encoding: {field} at offset {at}: not valid UTF-8.", e);
        }
    }

    private static void Require(ReadOnlySpan<byte> source, int at, int length, string field)
    {
        if (source.Length - at < length)
        {
            throw new DhtFormatException(field, at, $"truncated: {length} bytes needed, {source.Length - at} left.");
        }
    }
}
