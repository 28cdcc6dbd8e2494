using Petals.Transport;

namespace Petals.Discovery;

/// <summary>The DHT message types (docs/dht-protocol.md); requests are odd, their responses the next even value.</summary>
internal enum DhtMessageType : byte
{
    Ping = 1,
    Pong = 2,
    Store = 3,
    StoreResult = 4,
    FindNode = 5,
    Nodes = 6,
    FindValue = 7,
    Value = 8,
    Error = 255,
}

/// <summary>The codes an ERROR message carries.</summary>
internal enum DhtErrorCode : ushort
{
    Malformed = 1,
    IdentityMismatch = 2,
    UnexpectedType = 3,
    Internal = 4,

    /// <summary>The request is in a protocol version this node does not speak (answered in the requester's version when it is 1).</summary>
    UnsupportedVersion = 5,

    /// <summary>The request's signature does not verify against the sender's public key.</summary>
    Unauthenticated = 6,

    /// <summary>The request's timestamp lies outside the receiver's window (<see cref="DhtNodeOptions.RequestClockSkew"/>).</summary>
    StaleRequest = 7,

    /// <summary>The request's nonce was already seen within the window: a replayed request.</summary>
    Replayed = 8,

    /// <summary>The sender (by id, or by remote host) exceeded its request or record rate.</summary>
    RateLimited = 9,

    /// <summary>The sender's identity proof does not meet the receiver's puzzle difficulty.</summary>
    InsufficientWork = 10,
}

/// <summary>
/// The sender of a message: its id, the public key the id is the hash of, where it listens, and the nonce that
/// solves the identity puzzle for its key (<see cref="IdentityPuzzle"/>).
/// </summary>
internal sealed record DhtSender(NodeId Id, ReadOnlyMemory<byte> PublicKey, PeerAddress Address, ulong PuzzleNonce = 0)
{
    /// <summary>The sender of <paramref name="identity"/>'s messages, with its puzzle solved at <paramref name="difficulty"/>.</summary>
    public static DhtSender For(PeerIdentity identity, PeerAddress address, int difficulty) =>
        new(identity.NodeId, identity.PublicKey, address, identity.SolvePuzzle(difficulty));

    /// <summary>Whether <see cref="Id"/> is the hash of <see cref="PublicKey"/>.</summary>
    public bool IsIdentityConsistent => !PublicKey.IsEmpty && NodeId.FromPublicKey(PublicKey.Span) == Id;

    public DhtContact ToContact() => new(Id, Address);
}

/// <summary>One decoded DHT message; which fields are meaningful depends on <see cref="Type"/>.</summary>
internal sealed class DhtMessage
{
    private static readonly IReadOnlyList<DhtRecord> NoRecords = [];
    private static readonly IReadOnlyList<DhtContact> NoContacts = [];
    private static readonly IReadOnlyList<RecordValidationResult> NoResults = [];

    public DhtMessage(DhtMessageType type, ulong requestId, DhtSender sender)
    {
        ArgumentNullException.ThrowIfNull(sender);
        Type = type;
        RequestId = requestId;
        Sender = sender;
    }

    public DhtMessageType Type { get; }

    public ulong RequestId { get; }

    public DhtSender Sender { get; }

    /// <summary>STORE: the records to store; VALUE: the records found.</summary>
    public IReadOnlyList<DhtRecord> Records { get; init; } = NoRecords;

    /// <summary>NODES and VALUE: the closer contacts.</summary>
    public IReadOnlyList<DhtContact> Contacts { get; init; } = NoContacts;

    /// <summary>FIND_NODE: the target id.</summary>
    public NodeId Target { get; init; }

    /// <summary>FIND_VALUE: the key.</summary>
    public string Key { get; init; } = string.Empty;

    /// <summary>STORE_RESULT: one verdict per stored record, in order.</summary>
    public IReadOnlyList<RecordValidationResult> StoreResults { get; init; } = NoResults;

    /// <summary>ERROR: the code.</summary>
    public DhtErrorCode ErrorCode { get; init; }

    /// <summary>ERROR: the message.</summary>
    public string ErrorMessage { get; init; } = string.Empty;

    /// <summary>When the sender signed the message (Unix milliseconds; requests are refused outside the receiver's window).</summary>
    public long TimestampUnixMilliseconds { get; init; }

    /// <summary>
    /// The message's random nonce (<see cref="DhtMessageCodec.NonceSize"/> bytes): a request's is remembered by the
    /// receiver to refuse replays, and a response's signature covers its request's nonce. Empty: the encoder draws one.
    /// </summary>
    public ReadOnlyMemory<byte> Nonce { get; init; }

    /// <summary>Decoded messages: the signature (<see cref="PeerIdentity.SignatureSize"/> bytes).</summary>
    public ReadOnlyMemory<byte> Signature { get; init; }

    /// <summary>Decoded messages: the body bytes the signature covers (everything before the signature).</summary>
    public ReadOnlyMemory<byte> SignedBody { get; init; }

    /// <summary>A copy with the authentication fields a decoder read.</summary>
    public DhtMessage WithAuthentication(long timestamp, ReadOnlyMemory<byte> nonce, ReadOnlyMemory<byte> signature, ReadOnlyMemory<byte> signedBody) =>
        Copy(Sender, timestamp, nonce, signature, signedBody);

    /// <summary>A copy from another sender (without the authentication fields of a decoded message, but with its timestamp and nonce).</summary>
    public DhtMessage WithSender(DhtSender sender) => Copy(sender, TimestampUnixMilliseconds, Nonce, default, default);

    private DhtMessage Copy(DhtSender sender, long timestamp, ReadOnlyMemory<byte> nonce, ReadOnlyMemory<byte> signature, ReadOnlyMemory<byte> signedBody) => new(Type, RequestId, sender)
    {
        Records = Records,
        Contacts = Contacts,
        Target = Target,
        Key = Key,
        StoreResults = StoreResults,
        ErrorCode = ErrorCode,
        ErrorMessage = ErrorMessage,
        TimestampUnixMilliseconds = timestamp,
        Nonce = nonce,
        Signature = signature,
        SignedBody = signedBody,
    };

    public bool IsRequest => Type is DhtMessageType.Ping or DhtMessageType.Store or DhtMessageType.FindNode or DhtMessageType.FindValue;

    public override string ToString() => $"{Type} #{RequestId} from {Sender.Id}";
}
