namespace Petals.Discovery;

/// <summary>
/// Token buckets keyed by <typeparamref name="TKey"/> (a sender id or a remote host): each key may take up to
/// <c>burst</c> tokens at once and regains <c>rate</c> tokens per second on the injected clock. At most
/// <c>maxKeys</c> keys are tracked: when full, keys whose bucket has refilled (indistinguishable from a new key) are
/// dropped, and if none has, a new key is refused until one does. Thread-safe.
/// </summary>
/// <typeparam name="TKey">The key type.</typeparam>
internal sealed class TokenBuckets<TKey>
    where TKey : notnull
{
    private readonly Lock _gate = new();
    private readonly Dictionary<TKey, Bucket> _buckets = [];
    private readonly double _rate;
    private readonly double _burst;
    private readonly int _maxKeys;
    private readonly TimeProvider _time;

    public TokenBuckets(double ratePerSecond, double burst, int maxKeys, TimeProvider timeProvider)
    {
        _rate = ratePerSecond;
        _burst = burst;
        _maxKeys = maxKeys;
        _time = timeProvider;
    }

    /// <summary>How many keys are tracked.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _buckets.Count;
            }
        }
    }

    /// <summary>Takes <paramref name="cost"/> tokens from <paramref name="key"/>'s bucket if it holds them.</summary>
    /// <returns>Whether the tokens were taken (false: rate-limited; nothing taken).</returns>
    public bool TryTake(TKey key, double cost)
    {
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            if (!_buckets.TryGetValue(key, out var bucket))
            {
                if (_buckets.Count >= _maxKeys && !DropRefilled(now))
                {
                    return false;
                }

                bucket = new Bucket { Tokens = _burst, Stamp = now };
                _buckets.Add(key, bucket);
            }

            Refill(bucket, now);
            if (bucket.Tokens < cost)
            {
                return false;
            }

            bucket.Tokens -= cost;
            return true;
        }
    }

    private void Refill(Bucket bucket, long now)
    {
        var seconds = _time.GetElapsedTime(bucket.Stamp, now).TotalSeconds;
        if (seconds > 0)
        {
            bucket.Tokens = Math.Min(_burst, bucket.Tokens + (seconds * _rate));
            bucket.Stamp = now;
        }
    }

    private bool DropRefilled(long now)
    {
        var dropped = false;
        foreach (var (key, bucket) in _buckets)
        {
            Refill(bucket, now);
            if (bucket.Tokens >= _burst)
            {
                _buckets.Remove(key);
                dropped = true;
            }
        }

        return dropped;
    }

    private sealed class Bucket
    {
        public double Tokens;
        public long Stamp;
    }
}
