namespace Petals.Discovery;

/// <summary>The settings of a <see cref="DhtNode"/>.</summary>
public sealed record DhtNodeOptions
{
    /// <summary>The defaults: k = 20, alpha = 3, 5 s requests, hourly refresh, republication every 20 minutes.</summary>
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
        ArgumentNullException.ThrowIfNull(Storage, nameof(Storage));
        Storage.Validate();
    }
}
