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
}

/// <summary>The sender of a message: its id, the public key the id is the hash of, and where it listens.</summary>
internal sealed record DhtSender(NodeId Id, ReadOnlyMemory<byte> PublicKey, PeerAddress Address)
{
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

    public bool IsRequest => Type is DhtMessageType.Ping or DhtMessageType.Store or DhtMessageType.FindNode or DhtMessageType.FindValue;

    public override string ToString() => $"{Type} #{RequestId} from {Sender.Id}";
}
