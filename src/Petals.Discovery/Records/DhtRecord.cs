using System.Buffers.Binary;
using System.Text;

namespace Petals.Discovery;

/// <summary>
/// One sub-record of a DHT key: the value one peer announces under <see cref="Key"/>, stored under the sub-key
/// <see cref="SubKey"/> = the signer's node id, so one key (e.g. <c>"{model}.{block}"</c>) holds one sub-record per
/// announcing peer and no peer can write another's. The signature covers a domain-separation prefix, the key, the
/// sub-key, the expiration and the value (see <see cref="GetSignedPayload"/>).
/// </summary>
/// <remarks>
/// Immutable and thread-safe. Constructing one checks only the shape of its arguments; whether it is acceptable
/// (signed, unexpired, within limits) is <see cref="RecordValidator"/>'s job.
/// </remarks>
public sealed class DhtRecord
{
    /// <summary>The largest public key (DER SubjectPublicKeyInfo) a record carries: 128 bytes (P-256 needs 91).</summary>
    public const int MaxPublicKeyBytes = 128;

    /// <summary>The largest signature a record carries: 132 bytes (P-256 IEEE P1363 needs 64).</summary>
    public const int MaxSignatureBytes = 132;

    /// <summary>Bookkeeping bytes charged per stored record on top of its variable-size fields (see <see cref="StorageSize"/>).</summary>
    public const int StorageOverheadBytes = 96;

    internal static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static readonly byte[] SignatureDomain = Encoding.ASCII.GetBytes("petals-dht-record-v1\0");

    /// <summary>Creates a record from its parts (e.g. decoded from the wire). No signature check is made here.</summary>
    /// <param name="key">The DHT key; not empty, well-formed UTF-16 (it travels as UTF-8).</param>
    /// <param name="subKey">The signer's node id.</param>
    /// <param name="value">The value bytes.</param>
    /// <param name="expiresAt">When the record expires; kept to the millisecond (earlier than the Unix epoch is refused).</param>
    /// <param name="publicKey">The signer's DER SubjectPublicKeyInfo (empty for an unsigned record).</param>
    /// <param name="signature">The signature (empty for an unsigned record).</param>
    /// <exception cref="ArgumentException">The key is empty or not encodable as UTF-8, the expiration precedes 1970, or the key or signature exceeds its hard maximum.</exception>
    public DhtRecord(string key, NodeId subKey, ReadOnlyMemory<byte> value, DateTimeOffset expiresAt, ReadOnlyMemory<byte> publicKey, ReadOnlyMemory<byte> signature)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        try
        {
            KeyByteCount = StrictUtf8.GetByteCount(key);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException("The key is not well-formed UTF-16 (a lone surrogate) and cannot be encoded as UTF-8.", nameof(key), e);
        }

        if (KeyByteCount > ushort.MaxValue)
        {
            throw new ArgumentException($"The key is {KeyByteCount} UTF-8 bytes; the wire format allows at most {ushort.MaxValue}.", nameof(key));
        }

        var milliseconds = expiresAt.ToUnixTimeMilliseconds();
        if (milliseconds < 0)
        {
            throw new ArgumentException($"The expiration {expiresAt:O} precedes the Unix epoch.", nameof(expiresAt));
        }

        if (publicKey.Length > MaxPublicKeyBytes)
        {
            throw new ArgumentException($"The public key is {publicKey.Length} bytes; at most {MaxPublicKeyBytes}.", nameof(publicKey));
        }

        if (signature.Length > MaxSignatureBytes)
        {
            throw new ArgumentException($"The signature is {signature.Length} bytes; at most {MaxSignatureBytes}.", nameof(signature));
        }

        Key = key;
        SubKey = subKey;
        Value = value;
        ExpirationUnixMilliseconds = milliseconds;
        PublicKey = publicKey;
        Signature = signature;
    }

    /// <summary>The DHT key, e.g. <c>"llama-7b.12"</c>.</summary>
    public string Key { get; }

    /// <summary>The sub-key: the node id of the peer that signed this record.</summary>
    public NodeId SubKey { get; }

    /// <summary>The value bytes (e.g. an encoded <c>ServerInfo</c>).</summary>
    public ReadOnlyMemory<byte> Value { get; }

    /// <summary>When the record expires, to the millisecond.</summary>
    public DateTimeOffset ExpiresAt => DateTimeOffset.FromUnixTimeMilliseconds(ExpirationUnixMilliseconds);

    /// <summary>When the record expires, in milliseconds since the Unix epoch (its wire form).</summary>
    public long ExpirationUnixMilliseconds { get; }

    /// <summary>The signer's DER SubjectPublicKeyInfo; its hash must equal <see cref="SubKey"/>.</summary>
    public ReadOnlyMemory<byte> PublicKey { get; }

    /// <summary>The signature over <see cref="GetSignedPayload"/> (IEEE P1363, 64 bytes for P-256).</summary>
    public ReadOnlyMemory<byte> Signature { get; }

    /// <summary>Whether the record carries both a public key and a signature.</summary>
    public bool IsSigned => !PublicKey.IsEmpty && !Signature.IsEmpty;

    /// <summary>The UTF-8 length of <see cref="Key"/>.</summary>
    public int KeyByteCount { get; }

    /// <summary>The bytes this record is charged in a node's storage budget: its variable-size fields plus <see cref="StorageOverheadBytes"/>.</summary>
    public long StorageSize => (long)KeyByteCount + Value.Length + PublicKey.Length + Signature.Length + StorageOverheadBytes;

    /// <summary>The location of <see cref="Key"/> in the id space (<see cref="NodeId.FromKey"/>).</summary>
    public NodeId KeyId => NodeId.FromKey(Key);

    /// <summary>Creates a record signed by <paramref name="signer"/>, whose node id becomes the sub-key.</summary>
    /// <param name="signer">The announcing peer.</param>
    /// <param name="key">The DHT key.</param>
    /// <param name="value">The value bytes (copied).</param>
    /// <param name="expiresAt">When the record expires (truncated to the millisecond).</param>
    /// <exception cref="ArgumentException">The key or expiration is invalid (see the constructor).</exception>
    public static DhtRecord Create(PeerIdentity signer, string key, ReadOnlySpan<byte> value, DateTimeOffset expiresAt)
    {
        ArgumentNullException.ThrowIfNull(signer);
        var unsigned = new DhtRecord(key, signer.NodeId, value.ToArray(), expiresAt, signer.PublicKey, ReadOnlyMemory<byte>.Empty);
        var signature = signer.Sign(unsigned.GetSignedPayload());
        return unsigned.WithSignature(signer.PublicKey, signature);
    }

    /// <summary>A copy of this record with another public key and signature (e.g. for a re-signing or a test of forgery).</summary>
    /// <param name="publicKey">The public key.</param>
    /// <param name="signature">The signature.</param>
    public DhtRecord WithSignature(ReadOnlyMemory<byte> publicKey, ReadOnlyMemory<byte> signature) =>
        new(Key, SubKey, Value, ExpiresAt, publicKey, signature);

    /// <summary>
    /// The bytes the signature covers: the ASCII domain prefix <c>"petals-dht-record-v1\0"</c>, then the key length
    /// (u16 LE) and key (UTF-8), the sub-key (20 bytes), the expiration (i64 LE, Unix milliseconds), the value length
    /// (u32 LE) and the value. The prefix keeps these signatures from being valid for anything else a peer signs.
    /// </summary>
    public byte[] GetSignedPayload()
    {
        var payload = new byte[SignatureDomain.Length + 2 + KeyByteCount + NodeId.Size + 8 + 4 + Value.Length];
        var span = payload.AsSpan();
        SignatureDomain.CopyTo(span);
        var at = SignatureDomain.Length;
        BinaryPrimitives.WriteUInt16LittleEndian(span[at..], (ushort)KeyByteCount);
        at += 2;
        at += StrictUtf8.GetBytes(Key, span[at..]);
        SubKey.WriteTo(span[at..]);
        at += NodeId.Size;
        BinaryPrimitives.WriteInt64LittleEndian(span[at..], ExpirationUnixMilliseconds);
        at += 8;
        BinaryPrimitives.WriteUInt32LittleEndian(span[at..], (uint)Value.Length);
        at += 4;
        Value.Span.CopyTo(span[at..]);
        return payload;
    }

    /// <summary>Whether both records have the same key, sub-key, expiration, value, public key and signature.</summary>
    /// <param name="other">The other record.</param>
    public bool ContentEquals(DhtRecord? other) =>
        other is not null
        && Key == other.Key
        && SubKey == other.SubKey
        && ExpirationUnixMilliseconds == other.ExpirationUnixMilliseconds
        && Value.Span.SequenceEqual(other.Value.Span)
        && PublicKey.Span.SequenceEqual(other.PublicKey.Span)
        && Signature.Span.SequenceEqual(other.Signature.Span);

    /// <summary>A short description (key, sub-key, expiration, sizes) for logs; never the value.</summary>
    public override string ToString() =>
        $"{Key}/{SubKey} expires {ExpiresAt:O} ({Value.Length} value bytes, {(IsSigned ? "signed" : "unsigned")})";
}
