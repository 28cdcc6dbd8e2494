namespace Petals.Discovery;

/// <summary>The outcome of <see cref="RoutingTable.Update"/>.</summary>
/// <param name="Kind">What happened.</param>
/// <param name="PingCandidate">With <see cref="RoutingUpdateKind.Pending"/>, the least recently seen contact of the full bucket, to ping; otherwise null.</param>
public readonly record struct RoutingUpdate(RoutingUpdateKind Kind, DhtContact? PingCandidate);
