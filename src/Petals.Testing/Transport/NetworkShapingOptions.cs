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

    /// <summary>
    /// Addresses of stalled peers (compared without peer id). Thread-safe to change. While an address is listed, the
    /// streams this transport connected to it, and the streams a listener of this transport at it accepted, move no
    /// bytes in either direction: reads wait (bytes already read from the network are held back), and writes are
    /// buffered up to <see cref="MaxBufferedBytes"/> and then wait, as does a half-close. The connections stay open,
    /// so the peer looks connected but silent (it answers nothing, pings included). Removing the address resumes
    /// delivery in order, with nothing lost. New connects to a stalled address succeed and are stalled at once.
    /// </summary>
    public ICollection<PeerAddress> StalledAddresses { get; } = new ThreadSafeSet();

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

    /// <summary>Waits until <paramref name="address"/> (already without peer id) is no longer stalled; completes at once when it is not.</summary>
    internal ValueTask WaitWhileStalledAsync(PeerAddress address, CancellationToken cancellationToken) =>
        ((ThreadSafeSet)StalledAddresses).WaitWhileContainsAsync(address, cancellationToken);

    /// <summary>Whether <paramref name="address"/> is stalled now.</summary>
    internal bool IsStalled(PeerAddress address) => StalledAddresses.Count > 0 && StalledAddresses.Contains(address);

    /// <summary>A set of addresses without peer ids, safe to change from any thread, that wakes waiters on every change.</summary>
    private sealed class ThreadSafeSet : ICollection<PeerAddress>
    {
        private readonly Lock _lock = new();
        private readonly HashSet<PeerAddress> _set = [];
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

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

            SignalChanged();
        }

        public void Clear()
        {
            lock (_lock)
            {
                _set.Clear();
            }

            SignalChanged();
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
            bool removed;
            lock (_lock)
            {
                removed = _set.Remove(item.WithPeerId(null));
            }

            SignalChanged();
            return removed;
        }

        public IEnumerator<PeerAddress> GetEnumerator()
        {
            lock (_lock)
            {
                return new List<PeerAddress>(_set).GetEnumerator();
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

        public async ValueTask WaitWhileContainsAsync(PeerAddress address, CancellationToken cancellationToken)
        {
            while (true)
            {
                Task changed;
                lock (_lock)
                {
                    if (!_set.Contains(address))
                    {
                        return;
                    }

                    changed = _changed.Task;
                }

                await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        private void SignalChanged()
        {
            TaskCompletionSource old;
            lock (_lock)
            {
                old = _changed;
                _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            old.TrySetResult();
        }
    }
}
