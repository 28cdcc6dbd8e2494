namespace Petals.Discovery;

/// <summary>The settings of a <see cref="DhtNode"/>.</summary>
public sealed record DhtNodeOptions
{
    /// <summary>The defaults: k = 20, alpha = 3, 5 s requests, hourly refresh, republication every 20 minutes, and the limits below.</summary>
    public static DhtNodeOptions Default { get; } = new();

    /// <summary>The replication factor and bucket size k (how many closest nodes a lookup returns and a record is stored at).</summary>
    public int K { get; init; } = RoutingTable.DefaultBucketSize;

    /// <summary>How many queries a lookup keeps in flight in parallel.</summary>
    public int Alpha { get; init; } = 3;

    /// <summary>How long one request may take (connect, send, answer) before the peer counts as failed.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a bucket may stay idle before the periodic refresh looks up a random id in it.</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromHours(1);

    /// <summary>How often the node re-stores its own records (those given to <see cref="DhtNode.StoreAsync"/>) at the current k closest nodes.</summary>
    public TimeSpan RepublishInterval { get; init; } = TimeSpan.FromMinutes(20);

    /// <summary>How many incoming requests the node serves at once; further connections wait to be accepted (backpressure).</summary>
    public int MaxConcurrentRequests { get; init; } = 64;

    /// <summary>
    /// How many of the <see cref="MaxConcurrentRequests"/> one remote address (IP address, port ignored) may hold at
    /// once; a further connection from it is aborted at once with a reason and counted in
    /// <see cref="DhtNode.RequestsRefused"/>, so that one host cannot take every slot (default 8).
    /// </summary>
    public int MaxRequestsPerAddress { get; init; } = 8;

    /// <summary>
    /// Whether <see cref="DhtNode.JoinAsync"/> (and <see cref="DhtNode.BootstrapAsync"/>) refreshes every bucket from the
    /// nearest non-empty one up after the self lookup, as in Kademlia (default true). False joins with the self lookup
    /// only (cheaper: the farther buckets then fill from later traffic and the periodic refresh).
    /// </summary>
    public bool RefreshBucketsOnJoin { get; init; } = true;

    /// <summary>How many contacts that failed while in the routing table the node remembers as lost peers, re-pinged on every refresh (default 20; 0 turns it off).</summary>
    public int MaxLostPeers { get; init; } = 20;

    /// <summary>How long a lost peer is re-pinged before it is forgotten (default 24 h).</summary>
    public TimeSpan LostPeerRetention { get; init; } = TimeSpan.FromHours(24);

    /// <summary>
    /// The identity puzzle's difficulty: every sender (and responder) must carry a nonce that makes
    /// SHA-256("petals-dht-puzzle-v1\0" ‖ public key ‖ nonce) start with this many zero bits, so that each identity
    /// costs about 2^difficulty hashes to create (default 17: about 0.1–0.3 s on one core of the 2-core build machine under load; 0 turns the check off).
    /// Nodes of one swarm should agree: a node refuses senders below its own difficulty with InsufficientWork.
    /// </summary>
    public int PuzzleDifficulty { get; init; } = 17;

    /// <summary>How far a request's signed timestamp may lie from the receiver's clock, either way (default 60 s).</summary>
    public TimeSpan RequestClockSkew { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The most request nonces remembered to refuse replays (each for twice <see cref="RequestClockSkew"/>; default 100,000). When full, new requests are refused as RateLimited.</summary>
    public int MaxReplayCacheEntries { get; init; } = 100_000;

    /// <summary>Requests per second one sender id may make, sustained (default 50).</summary>
    public double SenderRequestsPerSecond { get; init; } = 50;

    /// <summary>Requests one sender id may make in a burst (default 200).</summary>
    public int SenderRequestBurst { get; init; } = 200;

    /// <summary>Requests per second one remote host may make across all its ids, sustained (default 200; applies where the transport reports a host, e.g. TCP).</summary>
    public double HostRequestsPerSecond { get; init; } = 200;

    /// <summary>Requests one remote host may make in a burst (default 800).</summary>
    public int HostRequestBurst { get; init; } = 800;

    /// <summary>Records per second one sender id may STORE, sustained (default 5; a server announcing 80 blocks every minute needs about 1.4).</summary>
    public double SenderRecordsPerSecond { get; init; } = 5;

    /// <summary>Records one sender id may STORE in a burst (default 300: a server's whole announcement at once).</summary>
    public int SenderRecordBurst { get; init; } = 300;

    /// <summary>The most senders and hosts whose rates are tracked at once (default 10,000; beyond, a new one is refused until a tracked bucket refills).</summary>
    public int MaxRateLimitedPeers { get; init; } = 10_000;

    /// <summary>
    /// The most address verifications in flight (default 32): a requester new to the routing table, or one that claims
    /// a new address, enters only once a PING to the claimed address is answered by its id; beyond this many, further
    /// requesters are answered but not verified (the old entry stays).
    /// </summary>
    public int MaxPendingVerifications { get; init; } = 32;

    /// <summary>The bounds of the node's record storage.</summary>
    public RecordStorageOptions Storage { get; init; } = RecordStorageOptions.Default;

    /// <summary>Throws if a setting is out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the exception names it.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(K, 1, nameof(K));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(K, DhtMessageCodec.MaxContacts, nameof(K));
        ArgumentOutOfRangeException.ThrowIfLessThan(Alpha, 1, nameof(Alpha));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConcurrentRequests, 1, nameof(MaxConcurrentRequests));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRequestsPerAddress, 1, nameof(MaxRequestsPerAddress));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RequestTimeout, TimeSpan.Zero, nameof(RequestTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RefreshInterval, TimeSpan.Zero, nameof(RefreshInterval));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RepublishInterval, TimeSpan.Zero, nameof(RepublishInterval));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxLostPeers, nameof(MaxLostPeers));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(LostPeerRetention, TimeSpan.Zero, nameof(LostPeerRetention));
        ArgumentOutOfRangeException.ThrowIfNegative(PuzzleDifficulty, nameof(PuzzleDifficulty));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(PuzzleDifficulty, IdentityPuzzle.MaxDifficulty, nameof(PuzzleDifficulty));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RequestClockSkew, TimeSpan.Zero, nameof(RequestClockSkew));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxReplayCacheEntries, 1, nameof(MaxReplayCacheEntries));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(SenderRequestsPerSecond, 0, nameof(SenderRequestsPerSecond));
        ArgumentOutOfRangeException.ThrowIfLessThan(SenderRequestBurst, 1, nameof(SenderRequestBurst));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HostRequestsPerSecond, 0, nameof(HostRequestsPerSecond));
        ArgumentOutOfRangeException.ThrowIfLessThan(HostRequestBurst, 1, nameof(HostRequestBurst));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(SenderRecordsPerSecond, 0, nameof(SenderRecordsPerSecond));
        ArgumentOutOfRangeException.ThrowIfLessThan(SenderRecordBurst, 1, nameof(SenderRecordBurst));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRateLimitedPeers, 1, nameof(MaxRateLimitedPeers));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxPendingVerifications, nameof(MaxPendingVerifications));
        ArgumentNullException.ThrowIfNull(Storage, nameof(Storage));
        Storage.Validate();
    }
}
