namespace Petals.Health;

/// <summary>
/// Peers that failed recently. A failure bans the peer for <see cref="PeerHealthOptions.BanBase"/> × 2^(failures − 1), at
/// most <see cref="PeerHealthOptions.BanCap"/>; a success clears the peer's failures. The failure count survives the end of a
/// ban, so a peer that fails again right after is banned twice as long.
/// </summary>
/// <remarks>
/// A conviction (<see cref="RecordConviction"/>: the peer's output was proven wrong) bans for
/// <see cref="PeerHealthOptions.WrongOutputBan"/> whatever the failure count, and a success does not lift it.
/// Thread-safe. Time comes from the injected <see cref="TimeProvider"/>.
/// </remarks>
internal sealed class PeerBans
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Entry> _peers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DateTimeOffset> _convicted = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly TimeSpan _base;
    private readonly TimeSpan _cap;
    private readonly TimeSpan _wrongOutputBan;

    /// <summary>Creates the ban list.</summary>
    /// <param name="options">The ban durations (validated).</param>
    /// <param name="timeProvider">The clock.</param>
    public PeerBans(PeerHealthOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        options.Validate();
        _base = options.BanBase;
        _cap = options.BanCap;
        _wrongOutputBan = options.WrongOutputBan;
        _time = timeProvider;
    }

    /// <summary>Records a failure of <paramref name="peerId"/> and bans it.</summary>
    /// <param name="peerId">The peer that failed.</param>
    /// <returns>How long the peer is banned from now.</returns>
    public TimeSpan RecordFailure(string peerId)
    {
        ArgumentException.ThrowIfNullOrEmpty(peerId);
        lock (_lock)
        {
            if (!_peers.TryGetValue(peerId, out var entry))
            {
                _peers[peerId] = entry = new Entry();
            }

            entry.Failures = entry.Failures == int.MaxValue ? int.MaxValue : entry.Failures + 1;
            var duration = Duration(entry.Failures);
            var now = _time.GetUtcNow();
            entry.Until = duration < DateTimeOffset.MaxValue - now ? now + duration : DateTimeOffset.MaxValue;
            return duration;
        }
    }

    /// <summary>Bans <paramref name="peerId"/> for <see cref="PeerHealthOptions.WrongOutputBan"/> from now: its output was proven wrong.</summary>
    /// <param name="peerId">The peer convicted.</param>
    /// <returns>How long the peer is banned from now.</returns>
    public TimeSpan RecordConviction(string peerId)
    {
        ArgumentException.ThrowIfNullOrEmpty(peerId);
        var now = _time.GetUtcNow();
        lock (_lock)
        {
            _convicted[peerId] = _wrongOutputBan < DateTimeOffset.MaxValue - now ? now + _wrongOutputBan : DateTimeOffset.MaxValue;
        }

        return _wrongOutputBan;
    }

    /// <summary>Records a success of <paramref name="peerId"/>: lifts its ban and forgets its failures.</summary>
    /// <param name="peerId">The peer that answered.</param>
    public void RecordSuccess(string peerId)
    {
        ArgumentException.ThrowIfNullOrEmpty(peerId);
        lock (_lock)
        {
            _peers.Remove(peerId);
        }
    }

    /// <summary>Whether <paramref name="peerId"/> is banned now.</summary>
    /// <param name="peerId">A peer id.</param>
    public bool IsBanned(string peerId)
    {
        ArgumentNullException.ThrowIfNull(peerId);
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            return (_peers.TryGetValue(peerId, out var entry) && entry.Until > now) || (_convicted.TryGetValue(peerId, out var until) && until > now);
        }
    }

    /// <summary>The failures recorded for <paramref name="peerId"/> since its last success.</summary>
    /// <param name="peerId">A peer id.</param>
    public int Failures(string peerId)
    {
        ArgumentNullException.ThrowIfNull(peerId);
        lock (_lock)
        {
            return _peers.TryGetValue(peerId, out var entry) ? entry.Failures : 0;
        }
    }

    /// <summary>The peers banned now (a copy, for <see cref="Petals.Routing.RouteRequest.BannedPeers"/>).</summary>
    public IReadOnlySet<string> Banned()
    {
        var now = _time.GetUtcNow();
        var banned = new HashSet<string>(StringComparer.Ordinal);
        lock (_lock)
        {
            foreach (var (peer, entry) in _peers)
            {
                if (entry.Until > now)
                {
                    banned.Add(peer);
                }
            }

            foreach (var (peer, until) in _convicted)
            {
                if (until > now)
                {
                    banned.Add(peer);
                }
            }
        }

        return banned;
    }

    private TimeSpan Duration(int failures)
    {
        // base × 2^(failures − 1), doubling step by step so that no power overflows before the cap stops it.
        var duration = _base;
        for (var i = 1; i < failures && duration < _cap; i++)
        {
            duration = duration.Ticks > _cap.Ticks / 2 ? _cap : duration * 2;
        }

        return duration < _cap ? duration : _cap;
    }

    private sealed class Entry
    {
        public int Failures { get; set; }

        public DateTimeOffset Until { get; set; }
    }
}
