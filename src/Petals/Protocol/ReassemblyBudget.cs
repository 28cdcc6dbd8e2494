using System.Globalization;

namespace Petals.Protocol;

/// <summary>
/// The bytes that chunked messages being reassembled may hold at once over every connection of a server
/// (<c>BlockServerOptions.MaxReassemblyBytes</c>). A <see cref="ProtocolReader"/> charges its reassembly buffer as it
/// grows and gives it back when the message is consumed or the connection ends. Thread-safe.
/// </summary>
internal sealed class ReassemblyBudget
{
    private long _used;
    private long _peak;
    private long _refusals;
    private long _dropped;
    private long _lastCollect = long.MinValue / 2;
    private long _collections;
    private int _quietCollectScheduled;

    /// <summary>Creates a budget of <paramref name="capacity"/> bytes.</summary>
    /// <param name="capacity">The most bytes held at once; positive.</param>
    public ReassemblyBudget(long capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Capacity = capacity;
    }

    /// <summary>The most bytes held at once.</summary>
    public long Capacity { get; }

    /// <summary>The least time between a collection and a quiet (aggressive) one; 10 s (shorter in tests).</summary>
    internal TimeSpan QuietCollectInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Bytes held now.</summary>
    public long Used => Interlocked.Read(ref _used);

    /// <summary>The most bytes held at once so far.</summary>
    public long Peak => Interlocked.Read(ref _peak);

    /// <summary>Messages refused because they did not fit.</summary>
    public long Refusals => Interlocked.Read(ref _refusals);

    /// <summary>Charges <paramref name="bytes"/>; false (and a refusal counted) when they do not fit.</summary>
    public bool TryReserve(long bytes)
    {
        var used = Interlocked.Read(ref _used);
        while (true)
        {
            if (used + bytes > Capacity)
            {
                Interlocked.Increment(ref _refusals);
                return false;
            }

            var seen = Interlocked.CompareExchange(ref _used, used + bytes, used);
            if (seen == used)
            {
                var total = used + bytes;
                var peak = Interlocked.Read(ref _peak);
                while (total > peak && Interlocked.CompareExchange(ref _peak, total, peak) != peak)
                {
                    peak = Interlocked.Read(ref _peak);
                }

                return true;
            }

            used = seen;
        }
    }

    /// <summary>
    /// Notes a large reassembly buffer dropped for the garbage collector. Large buffers live in the large-object heap,
    /// which is only collected by a full collection; a server that received big messages and then went quiet would keep
    /// their memory (RSS) indefinitely. A full collection is requested: a background one (at most once per second) once
    /// dropped buffers add up to the budget's capacity while messages are being received, an aggressive (compacting,
    /// decommitting) one (at most once per <see cref="QuietCollectInterval"/> since the last collection) once they add up
    /// to 64 MiB and no message is being received. A quiet collection that falls too soon after the last one is done when
    /// the interval has passed: a flood whose connections all close at once leaves no later drop to trigger it, and its
    /// memory would stay.
    /// </summary>
    public void OnLargeBufferDropped(long bytes)
    {
        var dropped = Interlocked.Add(ref _dropped, bytes);
        var quiet = Used == 0;
        if (dropped < (quiet ? 64L << 20 : Math.Max(Capacity, 64L << 20)))
        {
            return;
        }

        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref _lastCollect);
        var interval = quiet ? (long)QuietCollectInterval.TotalMilliseconds : 1000;
        if (now - last < interval || Interlocked.CompareExchange(ref _lastCollect, now, last) != last)
        {
            if (quiet && Interlocked.Exchange(ref _quietCollectScheduled, 1) == 0)
            {
                _ = Task.Delay(TimeSpan.FromMilliseconds(Math.Max(0, interval - (now - last)) + 10)).ContinueWith(
                    _ =>
                    {
                        Volatile.Write(ref _quietCollectScheduled, 0);
                        OnLargeBufferDropped(0);
                    },
                    CancellationToken.None,
                    TaskContinuationOptions.None,
                    TaskScheduler.Default);
            }

            return;
        }

        Interlocked.Exchange(ref _dropped, 0);
        Interlocked.Increment(ref _collections);
        if (quiet)
        {
            // No message is being received: give the memory back to the system now (a compacting collection, whose
            // pause falls when the server has nothing to reassemble).
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        }
        else
        {
            GC.Collect(2, GCCollectionMode.Forced, blocking: false);
        }
    }

    /// <summary>How many collections <see cref="OnLargeBufferDropped"/> requested.</summary>
    public long Collections => Interlocked.Read(ref _collections);

    /// <summary>Gives back what <see cref="TryReserve"/> charged.</summary>
    public void Release(long bytes) => Interlocked.Add(ref _used, -bytes);

    /// <summary>The error for a message that does not fit (retryable: <see cref="ProtocolErrorCode.Busy"/>).</summary>
    public ProtocolException Refused(FrameType type, uint streamId, long declared, long needed) => new(
        ProtocolErrorCode.Busy,
        string.Create(CultureInfo.InvariantCulture, $"The chunked {type} message on stream {streamId} ({declared} bytes) needs {needed} more bytes of reassembly buffer, but this server already holds {Used} bytes of messages being received over all connections (limit {Capacity}); the message was discarded: retry later or elsewhere."))
    {
        StreamId = streamId,
    };
}
