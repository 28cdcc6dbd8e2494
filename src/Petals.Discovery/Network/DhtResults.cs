using Petals.Transport;

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

/// <summary>What one initial peer answered when the node joined (<see cref="DhtNode.JoinAsync"/>).</summary>
/// <param name="Address">The peer's address as given.</param>
/// <param name="Id">The id the peer answered with, or null if it did not answer acceptably.</param>
/// <param name="Failure">Why the peer was refused or unreachable, or null if it answered.</param>
public sealed record DhtPeerOutcome(PeerAddress Address, NodeId? Id, string? Failure)
{
    /// <summary>Whether the peer answered with the expected identity.</summary>
    public bool Answered => Failure is null;

    /// <summary>E.g. <c>mem://dht-1: answered as node 3f…, not the expected 9a…</c>.</summary>
    public override string ToString() => Failure is null ? $"{Address}: node {Id}" : $"{Address}: {Failure}";
}

/// <summary>The outcome of <see cref="DhtNode.JoinAsync"/>: what every initial peer answered.</summary>
/// <param name="Peers">One outcome per distinct initial peer, in the order given.</param>
public sealed record DhtJoinResult(IReadOnlyList<DhtPeerOutcome> Peers)
{
    /// <summary>How many peers answered with the expected identity (0: the node reached nobody and is alone).</summary>
    public int Answered => Peers.Count(p => p.Answered);

    /// <summary>The peers refused or unreachable, with their reasons.</summary>
    public IReadOnlyList<DhtPeerOutcome> Failures => Peers.Where(p => !p.Answered).ToArray();

    /// <summary>A one-line summary naming every failed peer and its reason.</summary>
    public override string ToString() =>
        Failures.Count == 0
            ? $"{Answered} of {Peers.Count} initial peers answered"
            : $"{Answered} of {Peers.Count} initial peers answered; {string.Join("; ", Failures)}";
}
