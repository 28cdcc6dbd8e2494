using System.Globalization;
using Petals.Protocol;

namespace Petals.Server;

/// <summary>
/// The attention cache budget of a server, in tokens: reservations are granted in arrival order (FIFO, so a large
/// request is not overtaken forever by small ones), wait up to a timeout, and are returned exactly once.
/// </summary>
/// <remarks>Thread-safe.</remarks>
internal sealed class CacheBudget
{
    private readonly Lock _lock = new();
    private readonly LinkedList<Waiter> _waiters = new();
    private readonly TimeProvider _time;
    private long _free;
    private long _peakUsed;

    public CacheBudget(long capacity, TimeProvider timeProvider)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentNullException.ThrowIfNull(timeProvider);
        Capacity = capacity;
        _free = capacity;
        _time = timeProvider;
    }

    /// <summary>The whole budget.</summary>
    public long Capacity { get; }

    /// <summary>Tokens not reserved now.</summary>
    public long Free
    {
        get
        {
            lock (_lock)
            {
                return _free;
            }
        }
    }

    /// <summary>The most tokens reserved at once so far.</summary>
    public long PeakUsed
    {
        get
        {
            lock (_lock)
            {
                return _peakUsed;
            }
        }
    }

    /// <summary>The number of requests waiting.</summary>
    public int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _waiters.Count;
            }
        }
    }

    /// <summary>Reserves <paramref name="tokens"/>, waiting up to <paramref name="timeout"/> behind earlier requests.</summary>
    /// <exception cref="ProtocolException">Code <c>cache_exhausted</c> when the request exceeds the budget or the wait times out.</exception>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellationToken"/> is cancelled first.</exception>
    public ValueTask<CacheReservation> ReserveAsync(long tokens, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        cancellationToken.ThrowIfCancellationRequested();
        Waiter waiter;
        lock (_lock)
        {
            if (tokens > Capacity)
            {
                throw Full(tokens, _free);
            }

            if (_waiters.Count == 0 && tokens <= _free)
            {
                return ValueTask.FromResult(TakeLocked(tokens));
            }

            if (timeout <= TimeSpan.Zero)
            {
                throw Full(tokens, _free);
            }

            waiter = new Waiter(this, tokens);
            waiter.Node = _waiters.AddLast(waiter);
        }

        waiter.Arm(timeout, cancellationToken);
        return new ValueTask<CacheReservation>(waiter.Completion.Task);
    }

    private CacheReservation TakeLocked(long tokens)
    {
        _free -= tokens;
        _peakUsed = Math.Max(_peakUsed, Capacity - _free);
        return new CacheReservation(this, tokens);
    }

    private ProtocolException Full(long tokens, long free) => new(
        ProtocolErrorCode.CacheExhausted,
        string.Create(CultureInfo.InvariantCulture, $"cache full: the session needs {tokens} tokens, {free} of {Capacity} are free"));

    internal void Return(long tokens)
    {
        List<(Waiter Waiter, CacheReservation Reservation)>? granted = null;
        lock (_lock)
        {
            _free += tokens;
            if (_free > Capacity)
            {
                throw new InvalidOperationException("More cache tokens were returned than reserved.");
            }

            GrantLocked(ref granted);
        }

        Complete(granted);
    }

    private void GrantLocked(ref List<(Waiter Waiter, CacheReservation Reservation)>? granted)
    {
        while (_waiters.First is { } first && first.Value.Tokens <= _free)
        {
            var waiter = first.Value;
            _waiters.RemoveFirst();
            waiter.Node = null;
            (granted ??= []).Add((waiter, TakeLocked(waiter.Tokens)));
        }
    }

    private static void Complete(List<(Waiter Waiter, CacheReservation Reservation)>? granted)
    {
        if (granted is null)
        {
            return;
        }

        foreach (var (waiter, reservation) in granted)
        {
            waiter.Disarm();
            if (!waiter.Completion.TrySetResult(reservation))
            {
                reservation.Dispose();
            }
        }
    }

    /// <summary>Removes a waiter that timed out or was cancelled; the requests behind it may now fit.</summary>
    private bool TryRemove(Waiter waiter, out long free, out List<(Waiter Waiter, CacheReservation Reservation)>? granted)
    {
        granted = null;
        lock (_lock)
        {
            free = _free;
            if (waiter.Node is null)
            {
                return false;
            }

            _waiters.Remove(waiter.Node);
            waiter.Node = null;
            GrantLocked(ref granted);
            return true;
        }
    }

    private sealed class Waiter(CacheBudget owner, long tokens)
    {
        private ITimer? _timer;
        private CancellationTokenRegistration _registration;

        public long Tokens { get; } = tokens;

        public LinkedListNode<Waiter>? Node { get; set; }

        public TaskCompletionSource<CacheReservation> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Arm(TimeSpan timeout, CancellationToken cancellationToken)
        {
            _timer = owner._time.CreateTimer(static s => ((Waiter)s!).OnTimeout(), this, timeout, Timeout.InfiniteTimeSpan);
            if (cancellationToken.CanBeCanceled)
            {
                _registration = cancellationToken.Register(static (s, ct) => ((Waiter)s!).OnCancelled(ct), this);
            }

            if (Completion.Task.IsCompleted)
            {
                Disarm();
            }
        }

        public void Disarm()
        {
            _timer?.Dispose();
            _registration.Dispose();
        }

        private void OnTimeout()
        {
            if (owner.TryRemove(this, out var free, out var granted))
            {
                Completion.TrySetException(owner.Full(Tokens, free));
                _registration.Dispose();
            }

            Complete(granted);
        }

        private void OnCancelled(CancellationToken cancellationToken)
        {
            if (owner.TryRemove(this, out _, out var granted))
            {
                Completion.TrySetCanceled(cancellationToken);
                _timer?.Dispose();
            }

            Complete(granted);
        }
    }
}
