using Petals.Transport;

namespace Petals.Testing.Transport;

/// <summary>
/// Network conditions and faults that <see cref="TransportShapingExtensions.WithShaping"/> imposes on a transport.
/// Shaping applies to what a shaped stream <em>writes</em>: each direction is delayed by half the round-trip time,
/// so when both ends use the shaped transport (the usual case with one shared <see cref="MemoryTransport"/>),
/// a request and its reply take one <see cref="RoundTripLatency"/>. Faults are read at each connect and each
/// stream operation, so a test may change them while streams run.
/// </summary>
public sealed class NetworkShapingOptions
{
    /// <summary>The round-trip time; each written byte arrives half of it later. Default zero.</summary>
    public TimeSpan RoundTripLatency { get; set; }

    /// <summary>The most extra one-way delay, drawn uniformly per chunk from a generator seeded with <see cref="Seed"/>; order is kept. Default zero.</summary>
    public TimeSpan Jitter { get; set; }

    /// <summary>The seed of the jitter generator. Default 0.</summary>
    public int Seed { get; set; }

    /// <summary>The bandwidth of each direction of each stream in bytes per second (pacing: a chunk of n bytes occupies the link for n / bandwidth), or null for unlimited. Default null.</summary>
    public long? BandwidthBytesPerSecond { get; set; }

    /// <summary>How many written bytes may wait in the shaper before writes wait (back-pressure). Default 4 MiB.</summary>
    public int MaxBufferedBytes { get; set; } = 4 << 20;

    /// <summary>When true, every connect fails with <see cref="TransportErrorKind.ConnectionRefused"/>. Default false.</summary>
    public bool RefuseAllConnects { get; set; }

    /// <summary>Addresses to which connects fail with <see cref="TransportErrorKind.ConnectionRefused"/> (compared without peer id). Thread-safe to change.</summary>
    public ICollection<PeerAddress> RefusedAddresses { get; } = new ThreadSafeSet();

    /// <summary>When set, a stream is aborted (both directions, both ends) once this many bytes were written plus read through it. Default null.</summary>
    public long? DropAfterBytes { get; set; }

    /// <summary>When set, a stream is aborted this long after it was opened or accepted. Default null.</summary>
    public TimeSpan? DropAfterTime { get; set; }

    internal void Validate()
    {
        if (RoundTripLatency < TimeSpan.Zero || Jitter < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(RoundTripLatency), "RoundTripLatency and Jitter must not be negative.");
        }

        if (BandwidthBytesPerSecond is <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(BandwidthBytesPerSecond), BandwidthBytesPerSecond, "BandwidthBytesPerSecond must be positive (or null for unlimited).");
        }

        if (MaxBufferedBytes < 64 * 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBufferedBytes), MaxBufferedBytes, "MaxBufferedBytes must be at least 64 KiB.");
        }

        if (DropAfterBytes is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(DropAfterBytes), DropAfterBytes, "DropAfterBytes must not be negative.");
        }

        if (DropAfterTime is { } t && t < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(DropAfterTime), t, "DropAfterTime must not be negative.");
        }
    }

    private sealed class ThreadSafeSet : ICollection<PeerAddress>
    {
        private readonly Lock _lock = new();
        private readonly HashSet<PeerAddress> _set = [];

        public int Count
        {
            get
            {
                lock (_lock)
                {
                    return _set.Count;
                }
            }
        }

        public bool IsReadOnly => false;

        public void Add(PeerAddress item)
        {
            lock (_lock)
            {
                _set.Add(item.WithPeerId(null));
            }
        }

        public void Clear()
        {
            lock (_lock)
            {
                _set.Clear();
            }
        }

        public bool Contains(PeerAddress item)
        {
            lock (_lock)
            {
                return _set.Contains(item.WithPeerId(null));
            }
        }

        public void CopyTo(PeerAddress[] array, int arrayIndex)
        {
            lock (_lock)
            {
                _set.CopyTo(array, arrayIndex);
            }
        }

        public bool Remove(PeerAddress item)
        {
            lock (_lock)
            {
                return _set.Remove(item.WithPeerId(null));
            }
        }

        public IEnumerator<PeerAddress> GetEnumerator()
        {
            lock (_lock)
            {
                return new List<PeerAddress>(_set).GetEnumerator();
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
