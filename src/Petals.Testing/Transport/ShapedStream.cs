using System.Buffers;
using System.Threading.Channels;
using Petals.Transport;

namespace Petals.Testing.Transport;

/// <summary>
/// A stream whose writes pass through a delay line: each chunk is stamped with its due time (now + half RTT +
/// jitter, never before the previous chunk), paced by the bandwidth, and written to the inner stream by a pump.
/// Reads pass through; both count towards the drop-after-bytes fault. While the stream's fault address (the address it
/// was connected to, or the listener address it was accepted at) is stalled, the pump delivers nothing and reads wait,
/// holding back bytes a read already took from the inner stream.
/// </summary>
internal sealed class ShapedStream : ITransportStream
{
    private const int ChunkBytes = 64 * 1024;

    private readonly ITransportStream _inner;
    private readonly ShapingTransport _owner;
    private readonly NetworkShapingOptions _options;
    private readonly TimeProvider _time;
    private readonly Channel<Chunk> _queue = Channel.CreateUnbounded<Chunk>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly SemaphoreSlim _budget;
    private readonly CancellationTokenSource _closed = new();
    private readonly Task _pump;
    private readonly ITimer? _dropTimer;
    private readonly long _dropAfterBytes;
    private readonly PeerAddress _faultAddress;
    private readonly Action<ShapedStream>? _onDisposed;
    private byte[]? _held;
    private int _heldOffset;
    private int _heldCount;
    private long _lastDue;
    private long _bytesThrough;
    private volatile Exception? _failure;
    private volatile bool _writesCompleted;
    private volatile bool _disposed;
    private TaskCompletionSource? _completion;

    public ShapedStream(ITransportStream inner, ShapingTransport owner, PeerAddress faultAddress, Action<ShapedStream>? onDisposed)
    {
        _inner = inner;
        _owner = owner;
        _faultAddress = faultAddress;
        _onDisposed = onDisposed;
        _options = owner.Options;
        _time = owner.TimeProvider;
        _dropAfterBytes = _options.DropAfterBytes ?? long.MaxValue;
        _budget = new SemaphoreSlim(Math.Max(1, _options.MaxBufferedBytes / ChunkBytes));
        _pump = Task.Run(PumpAsync);
        if (_options.DropAfterTime is { } dropAfter)
        {
            _dropTimer = _time.CreateTimer(static s => ((ShapedStream)s!).Drop($"fault injected: stream dropped after {((ShapedStream)s!)._options.DropAfterTime}"), this, dropAfter, Timeout.InfiniteTimeSpan);
        }
    }

    public PeerAddress RemoteAddress => _inner.RemoteAddress;

    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        await WaitWhileStalledAsync(cancellationToken).ConfigureAwait(false);
        if (_heldCount > 0 && !buffer.IsEmpty)
        {
            // Bytes a read took from the inner stream during a stall and could not return (its caller cancelled).
            var count = Math.Min(buffer.Length, _heldCount);
            _held.AsSpan(_heldOffset, count).CopyTo(buffer.Span);
            _heldOffset += count;
            _heldCount -= count;
            if (_heldCount == 0)
            {
                ArrayPool<byte>.Shared.Return(_held!);
                _held = null;
            }

            return count;
        }

        var left = _dropAfterBytes - Interlocked.Read(ref _bytesThrough);
        if (left <= 0)
        {
            Drop($"fault injected: stream dropped after {_dropAfterBytes} bytes");
            ThrowIfFailed();
        }

        if (buffer.Length > left)
        {
            buffer = buffer[..(int)left];
        }

        int n;
        try
        {
            n = await _inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (TransportException) when (_failure is not null)
        {
            ThrowIfFailed();
            throw;
        }

        Interlocked.Add(ref _bytesThrough, n);
        if (n > 0 && _options.IsStalled(_faultAddress))
        {
            // The bytes arrived as the stall began: hold them until it ends. A caller that gives up keeps nothing
            // lost: the next read returns them.
            try
            {
                await WaitWhileStalledAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                _held = ArrayPool<byte>.Shared.Rent(n);
                buffer.Span[..n].CopyTo(_held);
                _heldOffset = 0;
                _heldCount = n;
                throw;
            }
        }

        return n;
    }

    public async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        if (_writesCompleted)
        {
            throw new InvalidOperationException($"Writes to the stream with {RemoteAddress} were already completed.");
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token);
        while (!buffer.IsEmpty)
        {
            var left = _dropAfterBytes - Interlocked.Read(ref _bytesThrough);
            if (left <= 0)
            {
                Drop($"fault injected: stream dropped after {_dropAfterBytes} bytes");
                ThrowIfFailed();
            }

            var n = (int)Math.Min(Math.Min(buffer.Length, ChunkBytes), left);
            try
            {
                await _budget.WaitAsync(linked.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                ThrowIfFailed();
                throw;
            }

            var array = ArrayPool<byte>.Shared.Rent(n);
            buffer.Span[..n].CopyTo(array);
            Interlocked.Add(ref _bytesThrough, n);
            _queue.Writer.TryWrite(new Chunk(array, n, NextDue(), null));
            buffer = buffer[n..];
        }
    }

    public async ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        if (!_writesCompleted)
        {
            _writesCompleted = true;
            _completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _queue.Writer.TryWrite(new Chunk(null, 0, NextDue(), _completion));
            _queue.Writer.TryComplete();
        }

        await _completion!.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Aborts the stream as a fault (see <see cref="ShapingTransport.AbortStreams"/>); false when it had already failed or was disposed.</summary>
    public bool TryAbort(string reason) =>
        !_disposed && Fail(TransportException.AbortedLocally(RemoteAddress, reason), reason);

    public void Abort(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        Fail(TransportException.AbortedLocally(RemoteAddress, reason), reason);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        // Writes count as completed only once the end of writes reached the inner stream (a half-close whose wait
        // was cancelled may still be queued behind data the peer does not read): otherwise abort, as TCP does.
        if ((!_writesCompleted || _completion is not { Task.IsCompletedSuccessfully: true }) && _failure is null)
        {
            Abort("stream disposed");
        }

        _disposed = true;
        _queue.Writer.TryComplete();
        if (_dropTimer is not null)
        {
            await _dropTimer.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            await _pump.ConfigureAwait(false);
        }
        catch (Exception e) when (e is TransportException or OperationCanceledException)
        {
            // The pump's failure was already recorded for callers.
        }

        await _inner.DisposeAsync().ConfigureAwait(false);
        _onDisposed?.Invoke(this);

        // Wake a read held by a stall (it then fails as disposed).
        _closed.Cancel();
        _closed.Dispose();
        if (_held is { } held)
        {
            _held = null;
            ArrayPool<byte>.Shared.Return(held);
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is null && serviceType.IsInstanceOfType(this) ? this : _inner.GetService(serviceType, serviceKey);
    }

    private long NextDue()
    {
        var due = _time.GetTimestamp() + ToTimestamp(_options.RoundTripLatency / 2 + _owner.NextJitter());
        var last = Interlocked.Read(ref _lastDue);
        if (due < last)
        {
            due = last;
        }

        Interlocked.Exchange(ref _lastDue, due);
        return due;
    }

    private long ToTimestamp(TimeSpan span) => (long)(span.Ticks * (double)_time.TimestampFrequency / TimeSpan.TicksPerSecond);

    private async Task PumpAsync()
    {
        long linkFree = 0;
        var token = _closed.Token;
        try
        {
            await foreach (var chunk in _queue.Reader.ReadAllAsync(token).ConfigureAwait(false))
            {
                var deliverAt = chunk.Due;
                if (_options.BandwidthBytesPerSecond is { } bandwidth && chunk.Length > 0)
                {
                    var start = Math.Max(deliverAt, linkFree);
                    linkFree = start + (long)(chunk.Length * (double)_time.TimestampFrequency / bandwidth);
                    deliverAt = linkFree;
                }

                // Task.Delay rounds to whole milliseconds (and sub-millisecond delays to none): wait on a timer
                // of the exact length, and wait again if a coarse clock woke us early.
                TimeSpan wait;
                while ((wait = _time.GetElapsedTime(_time.GetTimestamp(), deliverAt)) > TimeSpan.Zero)
                {
                    await DelayAsync(deliverAt, token).ConfigureAwait(false);
                }

                if (_options.IsStalled(_faultAddress))
                {
                    await _options.WaitWhileStalledAsync(_faultAddress, token).ConfigureAwait(false);
                }

                if (chunk.Completion is { } completion)
                {
                    await _inner.CompleteWritesAsync(token).ConfigureAwait(false);
                    completion.TrySetResult();
                    continue;
                }

                try
                {
                    await _inner.WriteAsync(chunk.Array.AsMemory(0, chunk.Length), token).ConfigureAwait(false);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(chunk.Array!);
                    _budget.Release();
                }
            }
        }
        catch (Exception e)
        {
            // A pump that stops for its own reason must not leave the peer waiting for bytes that will never come:
            // abort the inner stream too (a no-op when the failure came from it).
            var failure = e is OperationCanceledException && _failure is { } f ? f : e;
            Fail(failure, $"shaper failed: {failure.Message}");
            _completion?.TrySetException(failure);
        }
    }

    private async Task DelayAsync(long deliverAt, CancellationToken cancellationToken)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var before = _time.GetTimestamp();
        var first = _time.GetElapsedTime(before, deliverAt);
        if (first <= TimeSpan.Zero)
        {
            // The due time passed since the caller looked (a busy machine): a negative timer length is either
            // rejected or, at exactly -1 ms, means "never".
            return;
        }

        await using var timer = _time.CreateTimer(static s => ((TaskCompletionSource)s!).TrySetResult(), done, first, Timeout.InfiniteTimeSpan);

        // Timers are relative: a clock that moved while this one was armed (a manual clock advanced by the test
        // thread) would make it fire that much late, or never. Re-arm from the current time until the clock holds still.
        for (var i = 0; i < 3; i++)
        {
            var now = _time.GetTimestamp();
            if (now == before)
            {
                break;
            }

            before = now;
            var left = _time.GetElapsedTime(now, deliverAt);
            if (left <= TimeSpan.Zero)
            {
                done.TrySetResult();
                break;
            }

            timer.Change(left, Timeout.InfiniteTimeSpan);
        }

        await done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private void Drop(string reason) =>
        _ = Fail(TransportException.AbortedLocally(RemoteAddress, reason), reason);

    private bool Fail(Exception failure, string? abortReason)
    {
        if (Interlocked.CompareExchange(ref _failure, failure, null) is not null)
        {
            return false;
        }

        if (abortReason is not null)
        {
            _inner.Abort(abortReason);
        }

        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Disposed concurrently: nothing left to wake.
        }

        _completion?.TrySetException(failure);
        return true;
    }

    private async ValueTask WaitWhileStalledAsync(CancellationToken cancellationToken)
    {
        if (!_options.IsStalled(_faultAddress))
        {
            return;
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token);
        try
        {
            await _options.WaitWhileStalledAsync(_faultAddress, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            ThrowIfFailed();
            throw;
        }
    }

    private void ThrowIfFailed()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failure is { } failure)
        {
            throw failure is TransportException t
                ? new TransportException(t.Kind, t.Message, t)
                : new TransportException(TransportErrorKind.ConnectionReset, $"Stream with {RemoteAddress} failed: {failure.Message}", failure);
        }
    }

    private readonly record struct Chunk(byte[]? Array, int Length, long Due, TaskCompletionSource? Completion);
}
