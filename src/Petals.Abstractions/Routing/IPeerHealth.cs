namespace Petals.Routing;

/// <summary>
/// What a client knows of its servers' health, and the policy that turns reports into it: failure detection and
/// recovery report failures and successes here, ping rounds report round-trip times, and routing reads the banned
/// peers and the smoothed round-trip times back (<see cref="RouteRequest.BannedPeers"/>, <see cref="RouteRequest.ClientRtts"/>).
/// </summary>
/// <remarks>
/// The core's default bans a peer for a base time doubling with each failure up to a cap, and smooths round trips like
/// TCP's SRTT. Plug in another policy (e.g. a ban that depends on <see cref="PeerFailureKind"/>, a shared health store)
/// by passing it to the sequence manager. Implementations are thread-safe: reports arrive from many sessions at once.
/// </remarks>
public interface IPeerHealth
{
    /// <summary>Reports that <paramref name="peerId"/> served a call: a policy usually lifts its ban.</summary>
    /// <param name="peerId">The peer that answered.</param>
    void ReportSuccess(string peerId);

    /// <summary>Reports that <paramref name="peerId"/> failed a call.</summary>
    /// <param name="peerId">The peer that failed.</param>
    /// <param name="kind">What detection saw.</param>
    /// <returns>How long the peer is now banned from routes (zero when the policy does not ban it).</returns>
    TimeSpan ReportFailure(string peerId, PeerFailureKind kind);

    /// <summary>Reports a measured round-trip time to <paramref name="peerId"/>.</summary>
    /// <param name="peerId">The peer measured.</param>
    /// <param name="roundTrip">The measured time, not negative.</param>
    void ReportRoundTrip(string peerId, TimeSpan roundTrip);

    /// <summary>The peers banned now (a snapshot).</summary>
    /// <returns>The banned peer ids.</returns>
    IReadOnlySet<string> GetBannedPeers();

    /// <summary>The smoothed round-trip times known now, by peer id (a snapshot).</summary>
    /// <returns>The round-trip times.</returns>
    IReadOnlyDictionary<string, TimeSpan> GetRoundTripTimes();
}
