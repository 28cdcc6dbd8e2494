using Petals.Routing;

namespace Petals.Health;

/// <summary>
/// The default <see cref="IPeerHealth"/>: a failure of any kind bans the peer for <see cref="PeerHealthOptions.BanBase"/>
/// doubling with each further failure up to <see cref="PeerHealthOptions.BanCap"/>, a success lifts the ban and forgets
/// the failures, a proven wrong output (<see cref="PeerFailureKind.WrongOutput"/>) bans for the long
/// <see cref="PeerHealthOptions.WrongOutputBan"/> that no success lifts, and round trips are smoothed like TCP's SRTT (<see cref="PeerHealthOptions.RttSmoothing"/>).
/// </summary>
/// <remarks>
/// Thread-safe. Time comes from the injected <see cref="TimeProvider"/>. Wrap or replace it to change the policy (e.g.
/// longer bans for <see cref="PeerFailureKind.Mismatch"/>) and pass it to the sequence manager.
/// </remarks>
public sealed class PeerHealthPolicy : IPeerHealth
{
    private readonly PeerBans _bans;
    private readonly RttTracker _rtts;

    /// <summary>Creates the policy.</summary>
    /// <param name="options">Ban durations and smoothing; defaults when null.</param>
    /// <param name="timeProvider">The clock of the bans; the system clock when null.</param>
    /// <exception cref="ArgumentException">An option is out of range.</exception>
    public PeerHealthPolicy(PeerHealthOptions? options = null, TimeProvider? timeProvider = null)
    {
        options ??= new PeerHealthOptions();
        options.Validate();
        _bans = new PeerBans(options, timeProvider ?? TimeProvider.System);
        _rtts = new RttTracker(options);
    }

    /// <inheritdoc />
    public void ReportSuccess(string peerId) => _bans.RecordSuccess(peerId);

    /// <inheritdoc />
    /// <remarks>
    /// <see cref="PeerFailureKind.WrongOutput"/> (a proven lie) bans for <see cref="PeerHealthOptions.WrongOutputBan"/>,
    /// and a later success does not lift that ban; every other kind bans as described on the class.
    /// </remarks>
    public TimeSpan ReportFailure(string peerId, PeerFailureKind kind) =>
        kind == PeerFailureKind.WrongOutput ? _bans.RecordConviction(peerId) : _bans.RecordFailure(peerId);

    /// <inheritdoc />
    public void ReportRoundTrip(string peerId, TimeSpan roundTrip) => _rtts.AddSample(peerId, roundTrip);

    /// <inheritdoc />
    public IReadOnlySet<string> GetBannedPeers() => _bans.Banned();

    /// <inheritdoc />
    public IReadOnlyDictionary<string, TimeSpan> GetRoundTripTimes() => _rtts.Snapshot();

    /// <summary>The failures recorded for <paramref name="peerId"/> since its last success.</summary>
    /// <param name="peerId">A peer id.</param>
    /// <returns>The count (0 for a peer that never failed or served since).</returns>
    public int Failures(string peerId) => _bans.Failures(peerId);
}
