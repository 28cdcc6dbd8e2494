using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// Encodes and strictly decodes the DHT messages of docs/dht-protocol.md. Every length is checked against the input
/// and the protocol limits before anything is allocated; malformed input throws <see cref="DhtFormatException"/> only.
/// </summary>
internal static class DhtMessageCodec
{
    /// <summary>The protocol version this node speaks: 2, signed messages (version 1 was unsigned).</summary>
    public const byte Version = 2;

    /// <summary>The unsigned protocol of earlier releases, answered only with an UnsupportedVersion ERROR in its own format.</summary>
    public const byte LegacyVersion = 1;

    /// <summary>The size of a message nonce.</summary>
    public const int NonceSize = 16;

    /// <summary>The size of the authentication block that ends every message: timestamp (8), nonce (16), signature (64).</summary>
    public const int AuthBlockSize = 8 + NonceSize + PeerIdentity.SignatureSize;

    // The signature covers this ASCII prefix, then the 16-byte bound nonce (zeros for a request, the request's nonce for a
    // response), then the message body up to the signature: signatures of records and of messages can never be swapped.
    private static readonly byte[] SignatureDomain = "petals-dht-msg-v2\0"u8.ToArray();

    /// <summary>The largest frame body accepted or sent (1 MiB).</summary>
    public const int MaxFrameBytes = 1 << 20;

    /// <summary>The most records in one STORE or VALUE message.</summary>
    public const int MaxRecords = 256;

    /// <summary>The most contacts in one NODES or VALUE message.</summary>
    public const int MaxContacts = 64;

    /// <summary>The most UTF-8 bytes of a listen address.</summary>
    public const int MaxAddressBytes = 512;

    /// <summary>The most UTF-8 bytes of an error or rejection message.</summary>
    public const int MaxTextBytes = 1024;

    /// <summary>
    /// The record limits applied while decoding: wider than <see cref="RecordLimits.Default"/> so that an oversized
    /// record inside a valid frame reaches the validator and is refused with its precise reason.
    /// </summary>
    private static readonly RecordLimits WireLimits = new() { MaxKeyBytes = 4096, MaxValueBytes = MaxFrameBytes };

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Encodes <paramref name="message"/> as a whole frame (u32 length prefix included), signed by
    /// <paramref name="signer"/> with the message's timestamp and nonce (a fresh random nonce when it has none).
    /// </summary>
    /// <param name="message">The message.</param>
    /// <param name="signer">The sender's identity (its key should be the sender's; a receiver refuses anything else).</param>
    /// <param name="boundNonce">For a response, the nonce of the request it answers (its signature covers it); empty for a request.</param>
    /// <exception cref="ArgumentException">The message does not fit the protocol limits.</exception>
    public static byte[] EncodeFrame(DhtMessage message, PeerIdentity signer, ReadOnlySpan<byte> boundNonce = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(signer);
        if (!message.Nonce.IsEmpty && message.Nonce.Length != NonceSize)
        {
            throw new ArgumentException($"A message nonce is {NonceSize} bytes, not {message.Nonce.Length}.", nameof(message));
        }

        if (!boundNonce.IsEmpty && boundNonce.Length != NonceSize)
        {
            throw new ArgumentException($"A bound nonce is {NonceSize} bytes, not {boundNonce.Length}.", nameof(boundNonce));
        }

        var writer = new ArrayBufferWriter<byte>(256);
        writer.Advance(4);
        writer.GetSpan(1)[0] = Version;
        writer.Advance(1);
        writer.GetSpan(1)[0] = (byte)message.Type;
        writer.Advance(1);
        BinaryPrimitives.WriteUInt64LittleEndian(writer.GetSpan(8), message.RequestId);
        writer.Advance(8);
        WriteSender(writer, message.Sender);
        switch (message.Type)
        {
            case DhtMessageType.Ping:
            case DhtMessageType.Pong:
                break;
            case DhtMessageType.Store:
                WriteRecords(writer, message.Records);
                break;
            case DhtMessageType.StoreResult:
                WriteResults(writer, message.StoreResults);
                break;
            case DhtMessageType.FindNode:
                message.Target.WriteTo(writer.GetSpan(NodeId.Size));
                writer.Advance(NodeId.Size);
                break;
            case DhtMessageType.Nodes:
                WriteContacts(writer, message.Contacts);
                break;
            case DhtMessageType.FindValue:
                WriteText(writer, message.Key, RecordLimits.Default.MaxKeyBytes, "key");
                break;
            case DhtMessageType.Value:
                WriteRecords(writer, message.Records);
                WriteContacts(writer, message.Contacts);
                break;
            case DhtMessageType.Error:
                WriteU16(writer, (ushort)message.ErrorCode);
                WriteText(writer, Truncate(message.ErrorMessage), MaxTextBytes, "error message");
                break;
            default:
                throw new ArgumentException($"Unknown message type {(byte)message.Type}.", nameof(message));
        }

        BinaryPrimitives.WriteInt64LittleEndian(writer.GetSpan(8), message.TimestampUnixMilliseconds);
        writer.Advance(8);
        var nonce = writer.GetSpan(NonceSize)[..NonceSize];
        if (message.Nonce.IsEmpty)
        {
            RandomNumberGenerator.Fill(nonce);
        }
        else
        {
            message.Nonce.Span.CopyTo(nonce);
        }

        writer.Advance(NonceSize);
        var signature = signer.Sign(GetSignedPayload(writer.WrittenSpan[4..], boundNonce));
        writer.Write(signature);
        var body = writer.WrittenCount - 4;
        if (body > MaxFrameBytes)
        {
            throw new ArgumentException($"The {message.Type} message is {body} bytes; a frame holds at most {MaxFrameBytes}.", nameof(message));
        }

        var frame = writer.WrittenSpan.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)body);
        return frame;
    }

    /// <summary>Decodes one frame body (without its length prefix).</summary>
    /// <exception cref="DhtFormatException">The body is malformed; the exception names the field and offset.</exception>
    public static DhtMessage Decode(ReadOnlySpan<byte> body)
    {
        if (body.Length > MaxFrameBytes)
        {
            throw new DhtFormatException("frame", 0, $"{body.Length} bytes; a frame holds at most {MaxFrameBytes}.");
        }

        var at = 0;
        Require(body, at, 1, "version");
        if (body[0] != Version)
        {
            throw new DhtFormatException("version", 0, $"protocol version {body[0]} is not supported (expected {Version}).");
        }

        at++;
        Require(body, at, 1, "message type");
        var type = (DhtMessageType)body[at];
        if (!Enum.IsDefined(type))
        {
            throw new DhtFormatException("message type", at, $"unknown message type {body[at]}.");
        }

        at++;
        Require(body, at, 8, "request id");
        var requestId = BinaryPrimitives.ReadUInt64LittleEndian(body[at..]);
        at += 8;
        var sender = ReadSender(body, ref at);
        DhtMessage message;
        switch (type)
        {
            case DhtMessageType.Ping:
            case DhtMessageType.Pong:
                message = new DhtMessage(type, requestId, sender);
                break;
            case DhtMessageType.Store:
                message = new DhtMessage(type, requestId, sender) { Records = ReadRecords(body, ref at) };
                break;
            case DhtMessageType.StoreResult:
                message = new DhtMessage(type, requestId, sender) { StoreResults = ReadResults(body, ref at) };
                break;
            case DhtMessageType.FindNode:
                Require(body, at, NodeId.Size, "target");
                var target = NodeId.FromBytes(body.Slice(at, NodeId.Size));
                at += NodeId.Size;
                message = new DhtMessage(type, requestId, sender) { Target = target };
                break;
            case DhtMessageType.Nodes:
                message = new DhtMessage(type, requestId, sender) { Contacts = ReadContacts(body, ref at) };
                break;
            case DhtMessageType.FindValue:
                var key = ReadText(body, ref at, RecordLimits.Default.MaxKeyBytes, "key");
                if (key.Length == 0)
                {
                    throw new DhtFormatException("key", at, "the key is empty.");
                }

                message = new DhtMessage(type, requestId, sender) { Key = key };
                break;
            case DhtMessageType.Value:
                var records = ReadRecords(body, ref at);
                message = new DhtMessage(type, requestId, sender) { Records = records, Contacts = ReadContacts(body, ref at) };
                break;
            default:
                Require(body, at, 2, "error code");
                var code = (DhtErrorCode)BinaryPrimitives.ReadUInt16LittleEndian(body[at..]);
                at += 2;
                message = new DhtMessage(type, requestId, sender) { ErrorCode = code, ErrorMessage = ReadText(body, ref at, MaxTextBytes, "error message") };
                break;
        }

        Require(body, at, AuthBlockSize, "authentication block");
        var timestamp = BinaryPrimitives.ReadInt64LittleEndian(body[at..]);
        var nonceAt = at + 8;
        var signatureAt = nonceAt + NonceSize;
        at = signatureAt + PeerIdentity.SignatureSize;
        if (at != body.Length)
        {
            throw new DhtFormatException("end of message", at, $"{body.Length - at} unexpected trailing bytes after a {type} message.");
        }

        return message.WithAuthentication(timestamp, body.Slice(nonceAt, NonceSize).ToArray(), body.Slice(signatureAt, PeerIdentity.SignatureSize).ToArray(), body[..signatureAt].ToArray());
    }

    /// <summary>
    /// Whether <paramref name="message"/> (decoded) carries a valid signature by its sender's public key over its body,
    /// bound to <paramref name="boundNonce"/> (empty for a request; the request's nonce for a response).
    /// </summary>
    /// <param name="message">A decoded message.</param>
    /// <param name="boundNonce">The nonce the signature must cover.</param>
    public static bool VerifySignature(DhtMessage message, ReadOnlySpan<byte> boundNonce)
    {
        ArgumentNullException.ThrowIfNull(message);
        return !message.SignedBody.IsEmpty
            && PublicKeyCache.Verify(message.Sender.PublicKey.Span, GetSignedPayload(message.SignedBody.Span, boundNonce), message.Signature.Span);
    }

    /// <summary>
    /// Encodes an ERROR in the unsigned version-1 format, so that a node of an earlier release learns why it is
    /// refused (<see cref="DhtErrorCode.UnsupportedVersion"/>) instead of failing to read the answer.
    /// </summary>
    /// <param name="requestId">The request id read from the version-1 request.</param>
    /// <param name="sender">The local node.</param>
    /// <param name="code">The error code.</param>
    /// <param name="text">The error message.</param>
    public static byte[] EncodeLegacyError(ulong requestId, DhtSender sender, DhtErrorCode code, string text)
    {
        ArgumentNullException.ThrowIfNull(sender);
        var writer = new ArrayBufferWriter<byte>(256);
        writer.Advance(4);
        writer.Write([LegacyVersion, (byte)DhtMessageType.Error]);
        BinaryPrimitives.WriteUInt64LittleEndian(writer.GetSpan(8), requestId);
        writer.Advance(8);
        sender.Id.WriteTo(writer.GetSpan(NodeId.Size));
        writer.Advance(NodeId.Size);
        writer.Write([(byte)sender.PublicKey.Length]);
        writer.Write(sender.PublicKey.Span);
        WriteText(writer, sender.Address.ToString(), MaxAddressBytes, "sender address");
        WriteU16(writer, (ushort)code);
        WriteText(writer, Truncate(text), MaxTextBytes, "error message");
        var frame = writer.WrittenSpan.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)(frame.Length - 4));
        return frame;
    }

    /// <summary>The request id of a frame body of any version (0 when the body is too short to hold one).</summary>
    /// <param name="body">The frame body.</param>
    public static ulong PeekRequestId(ReadOnlySpan<byte> body) => body.Length >= 10 ? BinaryPrimitives.ReadUInt64LittleEndian(body[2..]) : 0;

    private static byte[] GetSignedPayload(ReadOnlySpan<byte> body, ReadOnlySpan<byte> boundNonce)
    {
        var payload = new byte[SignatureDomain.Length + NonceSize + body.Length];
        SignatureDomain.CopyTo(payload, 0);
        boundNonce.CopyTo(payload.AsSpan(SignatureDomain.Length));
        body.CopyTo(payload.AsSpan(SignatureDomain.Length + NonceSize));
        return payload;
    }

    /// <summary>Reads and decodes one whole frame from <paramref name="stream"/>; null if the stream ended before any byte.</summary>
    /// <exception cref="DhtFormatException">The frame is oversized, truncated or malformed.</exception>
    public static async ValueTask<DhtMessage?> ReadFrameAsync(ITransportStream stream, CancellationToken cancellationToken)
    {
        var body = await ReadFrameBodyAsync(stream, cancellationToken).ConfigureAwait(false);
        return body is null ? null : Decode(body);
    }

    /// <summary>Reads one whole frame body (without its length prefix) from <paramref name="stream"/>; null if the stream ended before any byte.</summary>
    /// <exception cref="DhtFormatException">The frame is oversized or truncated.</exception>
    public static async ValueTask<byte[]?> ReadFrameBodyAsync(ITransportStream stream, CancellationToken cancellationToken)
    {
        var header = new byte[4];
        var got = await ReadFullyAsync(stream, header, cancellationToken).ConfigureAwait(false);
        if (got == 0)
        {
            return null;
        }

        if (got < 4)
        {
            throw new DhtFormatException("frame length", 0, $"truncated: the stream ended after {got} of 4 bytes.");
        }

        var length = BinaryPrimitives.ReadUInt32LittleEndian(header);
        if (length == 0 || length > MaxFrameBytes)
        {
            throw new DhtFormatException("frame length", 0, $"{length} bytes; a frame holds 1 to {MaxFrameBytes} bytes.");
        }

        var body = new byte[length];
        got = await ReadFullyAsync(stream, body, cancellationToken).ConfigureAwait(false);
        if (got < body.Length)
        {
            throw new DhtFormatException("frame body", 4 + got, $"truncated: the stream ended after {got} of {length} bytes.");
        }

        return body;
    }

    private static async ValueTask<int> ReadFullyAsync(ITransportStream stream, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer[total..], cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    private static string Truncate(string text) => text.Length > MaxTextBytes / 4 ? text[..(MaxTextBytes / 4)] : text;

    private static void WriteU16(ArrayBufferWriter<byte> writer, ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(writer.GetSpan(2), value);
        writer.Advance(2);
    }

    private static void WriteText(ArrayBufferWriter<byte> writer, string text, int max, string field)
    {
        var length = StrictUtf8.GetByteCount(text);
        if (length > max)
        {
            throw new ArgumentException($"The {field} is {length} UTF-8 bytes; at most {max}.", nameof(text));
        }

        WriteU16(writer, (ushort)length);
        writer.Advance(StrictUtf8.GetBytes(text, writer.GetSpan(length)));
    }

    private static void WriteSender(ArrayBufferWriter<byte> writer, DhtSender sender)
    {
        sender.Id.WriteTo(writer.GetSpan(NodeId.Size));
        writer.Advance(NodeId.Size);
        if (sender.PublicKey.Length is 0 or > DhtRecord.MaxPublicKeyBytes)
        {
            throw new ArgumentException($"The sender's public key is {sender.PublicKey.Length} bytes; 1 to {DhtRecord.MaxPublicKeyBytes}.", nameof(sender));
        }

        writer.GetSpan(1)[0] = (byte)sender.PublicKey.Length;
        writer.Advance(1);
        writer.Write(sender.PublicKey.Span);
        WriteText(writer, sender.Address.ToString(), MaxAddressBytes, "sender address");
        BinaryPrimitives.WriteUInt64LittleEndian(writer.GetSpan(8), sender.PuzzleNonce);
        writer.Advance(8);
    }

    private static void WriteRecords(ArrayBufferWriter<byte> writer, IReadOnlyList<DhtRecord> records)
    {
        if (records.Count > MaxRecords)
        {
            throw new ArgumentException($"A message holds at most {MaxRecords} records, not {records.Count}.", nameof(records));
        }

        DhtRecordCodec.EncodeList(records, writer);
    }

    private static void WriteContacts(ArrayBufferWriter<byte> writer, IReadOnlyList<DhtContact> contacts)
    {
        if (contacts.Count > MaxContacts)
        {
            throw new ArgumentException($"A message holds at most {MaxContacts} contacts, not {contacts.Count}.", nameof(contacts));
        }

        WriteU16(writer, (ushort)contacts.Count);
        foreach (var contact in contacts)
        {
            contact.Id.WriteTo(writer.GetSpan(NodeId.Size));
            writer.Advance(NodeId.Size);
            WriteText(writer, contact.Address.ToString(), MaxAddressBytes, "contact address");
        }
    }

    private static void WriteResults(ArrayBufferWriter<byte> writer, IReadOnlyList<RecordValidationResult> results)
    {
        if (results.Count > MaxRecords)
        {
            throw new ArgumentException($"A message holds at most {MaxRecords} results, not {results.Count}.", nameof(results));
        }

        WriteU16(writer, (ushort)results.Count);
        foreach (var result in results)
        {
            writer.GetSpan(1)[0] = (byte)result.Reason;
            writer.Advance(1);
            WriteText(writer, Truncate(result.Message ?? string.Empty), MaxTextBytes, "rejection message");
        }
    }

    private static DhtSender ReadSender(ReadOnlySpan<byte> body, ref int at)
    {
        Require(body, at, NodeId.Size, "sender id");
        var id = NodeId.FromBytes(body.Slice(at, NodeId.Size));
        at += NodeId.Size;
        Require(body, at, 1, "sender public key length");
        var keyLength = body[at];
        if (keyLength == 0 || keyLength > DhtRecord.MaxPublicKeyBytes)
        {
            throw new DhtFormatException("sender public key length", at, $"{keyLength} bytes; 1 to {DhtRecord.MaxPublicKeyBytes}.");
        }

        at++;
        Require(body, at, keyLength, "sender public key");
        var key = body.Slice(at, keyLength).ToArray();
        at += keyLength;
        // An empty sender address is a client-mode node, which does not listen.
        var address = ReadAddress(body, ref at, "sender address", allowEmpty: true);
        Require(body, at, 8, "sender puzzle nonce");
        var puzzle = BinaryPrimitives.ReadUInt64LittleEndian(body[at..]);
        at += 8;
        return new DhtSender(id, key, address, puzzle);
    }

    private static PeerAddress ReadAddress(ReadOnlySpan<byte> body, ref int at, string field, bool allowEmpty = false)
    {
        var start = at;
        var text = ReadText(body, ref at, MaxAddressBytes, field);
        if (allowEmpty && text.Length == 0)
        {
            return default;
        }

        if (!PeerAddress.TryParse(text, out var address) || address.IsEmpty)
        {
            throw new DhtFormatException(field, start, $"'{text}' is not a valid peer address.");
        }

        return address;
    }

    private static string ReadText(ReadOnlySpan<byte> body, ref int at, int max, string field)
    {
        Require(body, at, 2, field + " length");
        int length = BinaryPrimitives.ReadUInt16LittleEndian(body[at..]);
        if (length > max)
        {
            throw new DhtFormatException(field + " length", at, $"{length} bytes; at most {max}.");
        }

        at += 2;
        Require(body, at, length, field);
        string text;
        try
        {
            text = StrictUtf8.GetString(body.Slice(at, length));
        }
        catch (DecoderFallbackException e)
        {
            throw new DhtFormatException($"DHT message encoding: {field} at offset {at}: not valid UTF-8.", e);
        }

        at += length;
        return text;
    }

    private static DhtRecord[] ReadRecords(ReadOnlySpan<byte> body, ref int at)
    {
        // The record list runs to a length the list itself determines; decode it record by record with a bounded count.
        Require(body, at, 2, "record count");
        var count = BinaryPrimitives.ReadUInt16LittleEndian(body[at..]);
        if (count > MaxRecords)
        {
            throw new DhtFormatException("record count", at, $"{count} records; at most {MaxRecords} are accepted.");
        }

        if ((long)count * (DhtRecordCodec.FixedSize + 1) > body.Length - at - 2)
        {
            throw new DhtFormatException("record count", at, $"{count} records cannot fit in the remaining {body.Length - at - 2} bytes.");
        }

        at += 2;
        var records = new DhtRecord[count];
        for (var i = 0; i < count; i++)
        {
            var start = at;
            try
            {
                records[i] = DhtRecordCodec.Decode(body[at..], WireLimits, out var consumed);
                at += consumed;
            }
            catch (DhtFormatException e)
            {
                throw new DhtFormatException($"DHT message encoding: record {i} at offset {start}: {e.Message}", e);
            }
        }

        return records;
    }

    private static DhtContact[] ReadContacts(ReadOnlySpan<byte> body, ref int at)
    {
        Require(body, at, 2, "contact count");
        var count = BinaryPrimitives.ReadUInt16LittleEndian(body[at..]);
        if (count > MaxContacts)
        {
            throw new DhtFormatException("contact count", at, $"{count} contacts; at most {MaxContacts} are accepted.");
        }

        if ((long)count * (NodeId.Size + 2) > body.Length - at - 2)
        {
            throw new DhtFormatException("contact count", at, $"{count} contacts cannot fit in the remaining {body.Length - at - 2} bytes.");
        }

        at += 2;
        var contacts = new DhtContact[count];
        for (var i = 0; i < count; i++)
        {
            Require(body, at, NodeId.Size, $"contact {i} id");
            var id = NodeId.FromBytes(body.Slice(at, NodeId.Size));
            at += NodeId.Size;
            contacts[i] = new DhtContact(id, ReadAddress(body, ref at, $"contact {i} address"));
        }

        return contacts;
    }

    private static RecordValidationResult[] ReadResults(ReadOnlySpan<byte> body, ref int at)
    {
        Require(body, at, 2, "result count");
        var count = BinaryPrimitives.ReadUInt16LittleEndian(body[at..]);
        if (count > MaxRecords)
        {
            throw new DhtFormatException("result count", at, $"{count} results; at most {MaxRecords} are accepted.");
        }

        if ((long)count * 3 > body.Length - at - 2)
        {
            throw new DhtFormatException("result count", at, $"{count} results cannot fit in the remaining {body.Length - at - 2} bytes.");
        }

        at += 2;
        var results = new RecordValidationResult[count];
        for (var i = 0; i < count; i++)
        {
            var reasonAt = at;
            Require(body, at, 1, $"result {i} reason");
            var reason = (RecordRejectionReason)body[at++];
            if (!Enum.IsDefined(reason))
            {
                throw new DhtFormatException($"result {i} reason", reasonAt, $"unknown rejection reason {(byte)reason}.");
            }

            var text = ReadText(body, ref at, MaxTextBytes, $"result {i} message");
            results[i] = reason == RecordRejectionReason.None ? RecordValidationResult.Accepted : RecordValidationResult.Reject(reason, text.Length == 0 ? reason.ToString() : text);
        }

        return results;
    }

    private static void Require(ReadOnlySpan<byte> source, int at, int length, string field)
    {
        if (source.Length - at < length)
        {
            throw new DhtFormatException(field, at, $"truncated: {length} bytes needed, {source.Length - at} left.");
        }
    }
}
