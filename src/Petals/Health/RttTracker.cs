namespace Petals.Health;

/// <summary>
/// The client's smoothed round-trip times to servers, like TCP's SRTT: the first sample is taken as is, each later one
/// moves the estimate by <see cref="PeerHealthOptions.RttSmoothing"/> of the difference.
/// </summary>
/// <remarks>Thread-safe.</remarks>
internal sealed class RttTracker
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, TimeSpan> _rtts = new(StringComparer.Ordinal);
    private readonly double _alpha;

    /// <summary>Creates the tracker.</summary>
    /// <param name="options">The smoothing factor (validated).</param>
    public RttTracker(PeerHealthOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _alpha = options.RttSmoothing;
    }

    /// <summary>Adds a measured round trip to <paramref name="peerId"/>.</summary>
    /// <param name="peerId">The peer pinged.</param>
    /// <param name="rtt">The measured round-trip time, not negative.</param>
    /// <returns>The new smoothed round-trip time.</returns>
    public TimeSpan AddSample(string peerId, TimeSpan rtt)
    {
        ArgumentException.ThrowIfNullOrEmpty(peerId);
        ArgumentOutOfRangeException.ThrowIfLessThan(rtt, TimeSpan.Zero);
        lock (_lock)
        {
            var smoothed = _rtts.TryGetValue(peerId, out var previous)
                ? TimeSpan.FromTicks(previous.Ticks + (long)Math.Round(_alpha * (rtt.Ticks - previous.Ticks)))
                : rtt;
            _rtts[peerId] = smoothed;
            return smoothed;
        }
    }

    /// <summary>Gets the smoothed round-trip time to <paramref name="peerId"/>, when it was measured.</summary>
    /// <param name="peerId">A peer id.</param>
    /// <param name="rtt">The smoothed round-trip time.</param>
    public bool TryGet(string peerId, out TimeSpan rtt)
    {
        ArgumentNullException.ThrowIfNull(peerId);
        lock (_lock)
        {
            return _rtts.TryGetValue(peerId, out rtt);
        }
    }

    /// <summary>Forgets <paramref name="peerId"/> (e.g. it left the swarm), so that its next sample starts afresh.</summary>
    /// <param name="peerId">A peer id.</param>
    public void Forget(string peerId)
    {
        ArgumentNullException.ThrowIfNull(peerId);
        lock (_lock)
        {
            _rtts.Remove(peerId);
        }
    }

    /// <summary>A copy of every smoothed round-trip time (for <see cref="Petals.Routing.RouteRequest.ClientRtts"/>).</summary>
    public IReadOnlyDictionary<string, TimeSpan> Snapshot()
    {
        lock (_lock)
        {
            return new Dictionary<string, TimeSpan>(_rtts, StringComparer.Ordinal);
        }
    }
}
