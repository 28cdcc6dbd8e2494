using System.Globalization;
using Petals.Protocol;

namespace Petals.Server;

/// <summary>
/// The attention cache budget of a server, in tokens: reservations are granted in arrival order (FIFO, so a large
/// request is not overtaken forever by small ones), wait up to a timeout, and are returned exactly once. One peer
/// (<see cref="CachePeerKey"/>) may claim at most <see cref="PeerLimit"/> tokens, held and waiting together: a request
/// that would take it past that is refused at once with <c>cache_busy</c>, so it never waits in (or jumps) the queue.
/// </summary>
/// <remarks>Thread-safe.</remarks>
internal sealed class CacheBudget
{
    private readonly Lock _lock = new();
    private readonly LinkedList<Waiter> _waiters = new();
    private readonly Dictionary<string, long> _claimed = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private long _free;
    private long _peakUsed;
    private long _refusedOverShare;
    private long _refusedTimedOut;
    private long _refusedTooLarge;

    /// <summary>Creates a budget.</summary>
    /// <param name="capacity">The whole budget in tokens.</param>
    /// <param name="timeProvider">The clock of the waiters' timeouts.</param>
    /// <param name="peerLimit">The most tokens one peer may hold and wait for at once; the whole budget when null.</param>
    public CacheBudget(long capacity, TimeProvider timeProvider, long? peerLimit = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentNullException.ThrowIfNull(timeProvider);
        Capacity = capacity;
        PeerLimit = Math.Clamp(peerLimit ?? capacity, 1, capacity);
        _free = capacity;
        _time = timeProvider;
    }

    /// <summary>The whole budget.</summary>
    public long Capacity { get; }

    /// <summary>The most tokens one peer may hold and wait for at once (<see cref="BlockServerOptions.MaxCacheShare"/>); the whole budget means no limit.</summary>
    public long PeerLimit { get; }

    /// <summary>Requests refused at once because their peer would claim more than <see cref="PeerLimit"/>.</summary>
    public long RefusedOverShare => Interlocked.Read(ref _refusedOverShare);

    /// <summary>Requests that waited past their timeout.</summary>
    public long RefusedTimedOut => Interlocked.Read(ref _refusedTimedOut);

    /// <summary>Requests larger than the whole budget.</summary>
    public long RefusedTooLarge => Interlocked.Read(ref _refusedTooLarge);

    /// <summary>The tokens <paramref name="peerKey"/> holds and waits for now.</summary>
    public long ClaimedBy(string peerKey)
    {
        lock (_lock)
        {
            return _claimed.GetValueOrDefault(peerKey);
        }
    }

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

    /// <summary>Reserves <paramref name="tokens"/> for an anonymous peer (<see cref="CachePeerKey.Anonymous"/>).</summary>
    public ValueTask<CacheReservation> ReserveAsync(long tokens, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        ReserveAsync(tokens, CachePeerKey.Anonymous, timeout, cancellationToken);

    /// <summary>Reserves <paramref name="tokens"/> for <paramref name="peerKey"/>, waiting up to <paramref name="timeout"/> behind earlier requests.</summary>
    /// <exception cref="ProtocolException">
    /// Code <c>cache_busy</c> when the peer would claim more than <see cref="PeerLimit"/> (refused at once);
    /// <c>cache_exhausted</c> when the request exceeds the budget or the wait times out.
    /// </exception>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellationToken"/> is cancelled first.</exception>
    public ValueTask<CacheReservation> ReserveAsync(long tokens, string peerKey, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        ArgumentNullException.ThrowIfNull(peerKey);
        cancellationToken.ThrowIfCancellationRequested();
        Waiter waiter;
        lock (_lock)
        {
            if (tokens > Capacity)
            {
                Interlocked.Increment(ref _refusedTooLarge);
                throw Full(tokens, _free);
            }

            var claimed = _claimed.GetValueOrDefault(peerKey);
            if (PeerLimit < Capacity && claimed + tokens > PeerLimit)
            {
                Interlocked.Increment(ref _refusedOverShare);
                throw OverShare(tokens, peerKey, claimed);
            }

            if (_waiters.Count == 0 && tokens <= _free)
            {
                _claimed[peerKey] = claimed + tokens;
                return ValueTask.FromResult(TakeLocked(tokens, peerKey));
            }

            if (timeout <= TimeSpan.Zero)
            {
                Interlocked.Increment(ref _refusedTimedOut);
                throw Full(tokens, _free);
            }

            _claimed[peerKey] = claimed + tokens;
            waiter = new Waiter(this, tokens, peerKey);
            waiter.Node = _waiters.AddLast(waiter);
        }

        waiter.Arm(timeout, cancellationToken);
        return new ValueTask<CacheReservation>(waiter.Completion.Task);
    }

    private CacheReservation TakeLocked(long tokens, string peerKey)
    {
        _free -= tokens;
        _peakUsed = Math.Max(_peakUsed, Capacity - _free);
        return new CacheReservation(this, tokens, peerKey);
    }

    /// <summary>Removes <paramref name="tokens"/> from <paramref name="peerKey"/>'s claim (the entry goes at zero, so the map holds claiming peers only).</summary>
    private void UnclaimLocked(string peerKey, long tokens)
    {
        var left = _claimed.GetValueOrDefault(peerKey) - tokens;
        if (left < 0)
        {
            throw new InvalidOperationException($"More cache tokens were returned for peer '{peerKey}' than it claimed.");
        }

        if (left == 0)
        {
            _claimed.Remove(peerKey);
        }
        else
        {
            _claimed[peerKey] = left;
        }
    }

    private ProtocolException Full(long tokens, long free) => new(
        ProtocolErrorCode.CacheExhausted,
        string.Create(CultureInfo.InvariantCulture, $"cache full: the session needs {tokens} tokens, {free} of {Capacity} are free"));

    private ProtocolException OverShare(long tokens, string peerKey, long claimed) => new(
        ProtocolErrorCode.CacheBusy,
        string.Create(CultureInfo.InvariantCulture,
            $"cache share exceeded: peer {peerKey} holds or waits for {claimed} tokens and this session needs {tokens} more; one peer may hold at most {PeerLimit} of {Capacity}; retry on another server or after a session of this peer ends"));

    internal void Return(long tokens, string peerKey)
    {
        List<(Waiter Waiter, CacheReservation Reservation)>? granted = null;
        lock (_lock)
        {
            _free += tokens;
            if (_free > Capacity)
            {
                throw new InvalidOperationException("More cache tokens were returned than reserved.");
            }

            UnclaimLocked(peerKey, tokens);
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
            (granted ??= []).Add((waiter, TakeLocked(waiter.Tokens, waiter.PeerKey)));
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
            UnclaimLocked(waiter.PeerKey, waiter.Tokens);
            GrantLocked(ref granted);
            return true;
        }
    }

    private sealed class Waiter(CacheBudget owner, long tokens, string peerKey)
    {
        private ITimer? _timer;
        private CancellationTokenRegistration _registration;

        public long Tokens { get; } = tokens;

        public string PeerKey { get; } = peerKey;

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
                Interlocked.Increment(ref owner._refusedTimedOut);
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
