namespace Petals.Discovery;

/// <summary>The outcome of an iterative node lookup.</summary>
/// <param name="Target">The id looked up.</param>
/// <param name="Closest">The closest nodes that answered, nearest first (at most k).</param>
/// <param name="Hops">The depth of the lookup: 1 for nodes from the local table, one more for each referral.</param>
/// <param name="MessagesSent">How many requests the lookup sent.</param>
public sealed record DhtLookupResult(NodeId Target, IReadOnlyList<DhtContact> Closest, int Hops, int MessagesSent);

/// <summary>The outcome of <see cref="DhtNode.GetAsync"/>.</summary>
/// <param name="Key">The key looked up.</param>
/// <param name="Records">The valid sub-records found (one per sub-key, the latest expiration), ordered by sub-key.</param>
/// <param name="Lookup">The lookup that found them (hops and messages for measurement).</param>
public sealed record DhtValueResult(string Key, IReadOnlyList<DhtRecord> Records, DhtLookupResult Lookup)
{
    /// <summary>Whether any record was found.</summary>
    public bool Found => Records.Count > 0;
}

/// <summary>What one node answered to a STORE.</summary>
/// <param name="Node">The node.</param>
/// <param name="Result">Its verdict, or null if it did not answer.</param>
public sealed record DhtStoreReply(DhtContact Node, RecordValidationResult? Result);

/// <summary>The outcome of <see cref="DhtNode.StoreAsync"/>.</summary>
/// <param name="Record">The record stored.</param>
/// <param name="Replies">Every node asked (the k closest, the local node included when it is one of them) and its verdict.</param>
/// <param name="Lookup">The lookup that found the k closest nodes.</param>
public sealed record DhtStoreResult(DhtRecord Record, IReadOnlyList<DhtStoreReply> Replies, DhtLookupResult Lookup)
{
    /// <summary>How many nodes accepted the record.</summary>
    public int AcceptedCount => Replies.Count(r => r.Result is { IsAccepted: true });
}
