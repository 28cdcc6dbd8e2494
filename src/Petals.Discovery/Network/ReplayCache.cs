namespace Petals.Discovery;

/// <summary>
/// The nonces of the requests accepted recently, so that a captured request cannot be delivered again: a nonce is
/// kept for twice the timestamp window after it arrived (by then any copy is refused as stale anyway), at most
/// <c>capacity</c> at once. Thread-safe.
/// </summary>
internal sealed class ReplayCache
{
    private readonly Lock _gate = new();
    private readonly HashSet<UInt128> _seen = [];
    private readonly Queue<(UInt128 Nonce, long Forget)> _order = new();
    private readonly int _capacity;
    private readonly TimeProvider _time;
    private readonly long _retentionMilliseconds;

    public ReplayCache(int capacity, TimeSpan window, TimeProvider timeProvider)
    {
        _capacity = capacity;
        _time = timeProvider;
        _retentionMilliseconds = (long)(2 * window.TotalMilliseconds);
    }

    /// <summary>The outcome of <see cref="TryAdd"/>.</summary>
    public enum Outcome
    {
        /// <summary>The nonce is new and now remembered.</summary>
        Added,

        /// <summary>The nonce was seen within the retention: a replay.</summary>
        Replayed,

        /// <summary>The cache is full of nonces still within their retention.</summary>
        Full,
    }

    /// <summary>Remembers <paramref name="nonce"/> (16 bytes) unless it was seen already.</summary>
    public Outcome TryAdd(ReadOnlySpan<byte> nonce)
    {
        var value = System.Buffers.Binary.BinaryPrimitives.ReadUInt128LittleEndian(nonce);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (_gate)
        {
            while (_order.Count > 0 && _order.Peek().Forget <= now)
            {
                _seen.Remove(_order.Dequeue().Nonce);
            }

            if (_seen.Contains(value))
            {
                return Outcome.Replayed;
            }

            if (_seen.Count >= _capacity)
            {
                return Outcome.Full;
            }

            _seen.Add(value);
            _order.Enqueue((value, now + _retentionMilliseconds));
            return Outcome.Added;
        }
    }
}
