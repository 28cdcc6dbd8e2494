namespace Petals.Discovery;

/// <summary>What <see cref="RoutingTable.Update"/> did with a contact.</summary>
public enum RoutingUpdateKind
{
    /// <summary>The contact was new and its bucket had room: it was added as the most recently seen.</summary>
    Added,

    /// <summary>The contact was already in its bucket: it became the most recently seen (its address updated).</summary>
    Refreshed,

    /// <summary>
    /// The contact's bucket is full: the contact waits in the bucket's replacement cache, and the caller should ping
    /// <see cref="RoutingUpdate.PingCandidate"/> (the least recently seen). If it answers, call
    /// <see cref="RoutingTable.Update"/> with it (it stays, the newcomer waits); if not, call
    /// <see cref="RoutingTable.MarkFailed"/> and the most recently seen replacement takes its place.
    /// </summary>
    Pending,

    /// <summary>The contact is the local node itself, which a routing table never holds.</summary>
    IgnoredSelf,
}
