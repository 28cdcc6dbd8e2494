namespace Petals.Server;

/// <summary>
/// Decides when a repeated event is logged: at most once per interval, with the count of the events left unlogged
/// since the last line. Thread-safe.
/// </summary>
internal sealed class RateLimitedCounter(TimeProvider time, TimeSpan interval)
{
    private readonly Lock _lock = new();
    private long _lastLogged = long.MinValue;
    private long _suppressed;

    /// <summary>Counts one event; true when it should be logged now, with <paramref name="suppressed"/> the events not logged since the last line.</summary>
    public bool Add(out long suppressed)
    {
        var now = time.GetTimestamp();
        lock (_lock)
        {
            if (_lastLogged != long.MinValue && time.GetElapsedTime(_lastLogged, now) < interval)
            {
                _suppressed++;
                suppressed = 0;
                return false;
            }

            _lastLogged = now;
            suppressed = _suppressed;
            _suppressed = 0;
            return true;
        }
    }
}
