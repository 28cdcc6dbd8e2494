using Petals.Health;
using Petals.Routing;

namespace Petals.Tests.Health;

/// <summary>A <see cref="PeerHealthPolicy"/> (or another health) that also records every failure reported to it, with its kind.</summary>
internal sealed class RecordingPeerHealth(IPeerHealth? inner = null) : IPeerHealth
{
    private readonly Lock _lock = new();
    private readonly List<(string PeerId, PeerFailureKind Kind)> _failures = [];
    private readonly List<string> _successes = [];

    public IPeerHealth Inner { get; } = inner ?? new PeerHealthPolicy();

    /// <summary>The failures reported so far, in order.</summary>
    public IReadOnlyList<(string PeerId, PeerFailureKind Kind)> Failures
    {
        get
        {
            lock (_lock)
            {
                return [.. _failures];
            }
        }
    }

    /// <summary>The successes reported so far, in order.</summary>
    public IReadOnlyList<string> Successes
    {
        get
        {
            lock (_lock)
            {
                return [.. _successes];
            }
        }
    }

    public void ReportSuccess(string peerId)
    {
        lock (_lock)
        {
            _successes.Add(peerId);
        }

        Inner.ReportSuccess(peerId);
    }

    public TimeSpan ReportFailure(string peerId, PeerFailureKind kind)
    {
        lock (_lock)
        {
            _failures.Add((peerId, kind));
        }

        return Inner.ReportFailure(peerId, kind);
    }

    public void ReportRoundTrip(string peerId, TimeSpan roundTrip) => Inner.ReportRoundTrip(peerId, roundTrip);

    public IReadOnlySet<string> GetBannedPeers() => Inner.GetBannedPeers();

    public IReadOnlyDictionary<string, TimeSpan> GetRoundTripTimes() => Inner.GetRoundTripTimes();
}
