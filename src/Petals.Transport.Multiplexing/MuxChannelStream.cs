// Over 300 lines on purpose: the receive loop, half-close, abort and the close handshake share one stream's state
// and its ordering rules; each part alone would not be a stream.
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using Nerdbank.Streams;

namespace Petals.Transport.Multiplexing;

/// <summary>
/// One logical stream: a Nerdbank channel carrying a tiny framing, as the TCP transport does over TLS, because a
/// channel cannot carry an abort reason. Frames: a 5-byte header (type, little-endian uint32 length) then the payload.
/// Types: open (empty; the connecting side's first frame, which makes the listening side hand the stream out), data (at
/// most <see cref="MaxDataFrame"/> bytes), end of writes (empty), abort (a UTF-8 reason of at most <see cref="MaxReasonBytes"/>). A receive loop parses frames into a bounded pipe, so an abort from the peer is seen
/// even by a side that only writes; back-pressure reaches the sender through the channel's window.
/// </summary>
/// <remarks>
/// The Nerdbank channel is closed only once both sides are done (this side disposed, the peer's end or abort frame
/// received) or after <see cref="MultiplexingTransportOptions.CloseLinger"/>, so a close never cuts data in flight.
/// </remarks>
internal sealed class MuxChannelStream : ITransportStream
{
    internal const int HeaderBytes = 5;
    internal const int MaxDataFrame = 64 * 1024;
    internal const int MaxReasonBytes = 1024;
    internal const byte DataFrame = 0;
    internal const byte EndFrame = 1;
    internal const byte AbortFrame = 2;
    internal const byte OpenFrame = 3;
    private static readonly TimeSpan AbortSendLimit = TimeSpan.FromSeconds(2);

    private readonly MultiplexingStream.Channel _channel;
    private readonly MuxConnection _connection;
    private readonly MultiplexingTransportOptions _options;
    private readonly Pipe _inbound;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Lock _stateLock = new();
    private readonly CancellationTokenSource _lifetime = new();
    private Task _receiveLoop = Task.CompletedTask;
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _peerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile string? _localAbortReason;
    private volatile string? _peerAbortReason;
    private volatile TransportException? _broken;
    private volatile bool _writesCompleted;
    private volatile bool _disposed;
    private int _channelClosed;
    private Action<MuxChannelStream>? _onOpened;

    /// <summary>Wraps a channel.</summary>
    /// <param name="channel">The Nerdbank channel (accepted, or being accepted).</param>
    /// <param name="connection">The connection that carries it.</param>
    /// <param name="remoteAddress">The peer's address.</param>
    /// <param name="options">The limits.</param>
    /// <param name="onOpened">For a channel the peer opened: called once its open frame arrives (the stream is handed out then). Null for a channel this side opened, which sends the open frame itself.</param>
    public MuxChannelStream(MultiplexingStream.Channel channel, MuxConnection connection, PeerAddress remoteAddress, MultiplexingTransportOptions options, Action<MuxChannelStream>? onOpened)
    {
        _onOpened = onOpened;
        _channel = channel;
        _connection = connection;
        _options = options;
        RemoteAddress = remoteAddress;
        _inbound = new Pipe(new PipeOptions(pauseWriterThreshold: options.ChannelReceiveWindowBytes, resumeWriterThreshold: options.ChannelReceiveWindowBytes / 2, useSynchronizationContext: false));
    }

    /// <summary>Starts receiving (once the connection has recorded the stream).</summary>
    public void Start()
    {
        _receiveLoop = Task.Run(ReceiveLoopAsync);
        _ = WatchChannelAsync();
    }

    public PeerAddress RemoteAddress { get; }

    /// <summary>Completes when the underlying channel is closed (and no longer counts against the connection's limit).</summary>
    public Task Closed => _closed.Task;

    /// <summary>Whether a channel the peer opened was handed out (its open frame arrived); always true for channels this side opened.</summary>
    public bool Opened => Volatile.Read(ref _onOpened) is null;

    /// <summary>Sends the open frame (the connecting side's first frame); it leaves once the channel is accepted.</summary>
    public async ValueTask SendOpenAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfUnusable();
            WriteFrame(OpenFrame, ReadOnlySpan<byte>.Empty);
            await FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty)
        {
            throw new ArgumentException("The buffer must not be empty.", nameof(buffer));
        }

        while (true)
        {
            ThrowIfUnusable();
            ReadResult result;
            try
            {
                result = await _inbound.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (TransportException)
            {
                ThrowIfUnusable();
                throw;
            }

            if (result.IsCanceled)
            {
                continue; // woken by a local abort: the check above throws
            }

            var data = result.Buffer;
            var count = (int)Math.Min(data.Length, buffer.Length);
            var slice = data.Slice(0, count);
            slice.CopyTo(buffer.Span);
            _inbound.Reader.AdvanceTo(slice.End);
            if (count > 0)
            {
                return count;
            }

            if (result.IsCompleted)
            {
                ThrowIfUnusable();
                return 0;
            }
        }
    }

    public async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        if (_writesCompleted)
        {
            throw new InvalidOperationException($"Writes to the stream with {RemoteAddress} were already completed.");
        }

        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfUnusable();
            if (_writesCompleted)
            {
                throw new InvalidOperationException($"Writes to the stream with {RemoteAddress} were already completed.");
            }

            while (!buffer.IsEmpty)
            {
                var n = Math.Min(buffer.Length, MaxDataFrame);
                WriteFrame(DataFrame, buffer.Span[..n]);
                buffer = buffer[n..];
                await FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public async ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_writesCompleted)
            {
                return;
            }

            ThrowIfUnusable();
            WriteFrame(EndFrame, ReadOnlySpan<byte>.Empty);
            await FlushAsync(cancellationToken).ConfigureAwait(false);
            _writesCompleted = true;

            // Completing the channel's writer too lets Nerdbank close the channel by itself once both sides are done,
            // after everything queued is sent (disposing a channel may drop queued bytes).
            await _channel.Output.CompleteAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public void Abort(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        lock (_stateLock)
        {
            if (_localAbortReason is not null || _peerAbortReason is not null || _broken is not null || _disposed)
            {
                return;
            }

            _localAbortReason = reason;
        }

        // Wake our own pending read and a write waiting on the window, then tell the peer in the background.
        _inbound.Reader.CancelPendingRead();
        _inbound.Writer.CancelPendingFlush();
        _channel.Output.CancelPendingFlush();
        _ = Task.Run(() => SendAbortAndCloseAsync(reason));
    }

    public ValueTask DisposeAsync()
    {
        lock (_stateLock)
        {
            if (_disposed)
            {
                return ValueTask.CompletedTask;
            }
        }

        if (!_writesCompleted && _localAbortReason is null && _peerAbortReason is null && _broken is null)
        {
            Abort("stream disposed");
        }

        lock (_stateLock)
        {
            _disposed = true;
        }

        if (_localAbortReason is null)
        {
            // Graceful: our end frame is sent; close the channel once the peer has ended too (or the linger ran out).
            _ = Task.Run(LingerAndCloseAsync);
        }

        return ValueTask.CompletedTask;
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is null && serviceType.IsInstanceOfType(this))
        {
            return this;
        }

        // The physical connection's services (its socket, an authenticated peer identity, …) belong to every channel.
        return _connection.Inner.GetService(serviceType, serviceKey);
    }

    /// <summary>Fails the stream because its connection broke; every later operation throws <paramref name="error"/>.</summary>
    public void Fail(TransportException error)
    {
        lock (_stateLock)
        {
            if (_broken is not null || _localAbortReason is not null || _peerAbortReason is not null)
            {
                CloseChannel();
                return;
            }

            _broken = error;
        }

        _inbound.Writer.Complete(error);
        _channel.Output.CancelPendingFlush();
        CloseChannel();
    }

    private void WriteFrame(byte type, ReadOnlySpan<byte> payload)
    {
        var output = _channel.Output;
        var span = output.GetSpan(HeaderBytes + payload.Length);
        span[0] = type;
        BinaryPrimitives.WriteUInt32LittleEndian(span[1..], (uint)payload.Length);
        payload.CopyTo(span[HeaderBytes..]);
        output.Advance(HeaderBytes + payload.Length);
    }

    private async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        FlushResult flush;
        try
        {
            flush = await _channel.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or MultiplexingProtocolException)
        {
            ThrowIfUnusable();
            throw Broken(e);
        }

        if (flush.IsCanceled || flush.IsCompleted)
        {
            ThrowIfUnusable();
            throw _broken ?? new TransportException(TransportErrorKind.ConnectionReset, $"Stream with {RemoteAddress} closed by the peer without ending its writes or giving an abort reason (its channel of the multiplexed connection was closed).");
        }
    }

    private async Task SendAbortAndCloseAsync(string reason)
    {
        var bytes = Encoding.UTF8.GetBytes(reason);
        if (bytes.Length > MaxReasonBytes)
        {
            bytes = bytes[..MaxReasonBytes];
        }

        // Only a frame boundary may carry the abort frame: if a write holds the lock, the channel is just closed.
        var sent = false;
        if (await _writeLock.WaitAsync(AbortSendLimit).ConfigureAwait(false))
        {
            try
            {
                WriteFrame(AbortFrame, bytes);
                using var limit = new CancellationTokenSource(AbortSendLimit, _options.TimeProvider);
                var flush = await _channel.Output.FlushAsync(limit.Token).ConfigureAwait(false);
                if (flush.IsCanceled)
                {
                    // The cancellation Abort requested for a pending write may land on this flush instead.
                    flush = await _channel.Output.FlushAsync(limit.Token).ConfigureAwait(false);
                }

                sent = !flush.IsCanceled && !flush.IsCompleted;
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or MultiplexingProtocolException)
            {
                // Fall back to closing the channel below.
            }
            finally
            {
                _writeLock.Release();
            }
        }

        if (sent)
        {
            // Let the peer read the abort frame before the channel goes: it closes the channel on reading it.
            try
            {
                await _channel.Output.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or MultiplexingProtocolException)
            {
                // The channel is going anyway.
            }

            await Task.WhenAny(_channel.Completion, Task.Delay(_options.CloseLinger, _options.TimeProvider)).ConfigureAwait(false);
        }

        CloseChannel();
    }

    private async Task LingerAndCloseAsync()
    {
        // Nerdbank closes the channel itself once both sides completed their writes; a peer that never does is cut off.
        await Task.WhenAny(_channel.Completion, Task.Delay(_options.CloseLinger, _options.TimeProvider)).ConfigureAwait(false);
        CloseChannel();
    }

    private void CloseChannel()
    {
        if (Interlocked.Exchange(ref _channelClosed, 1) != 0)
        {
            return;
        }

        _lifetime.Cancel();
        try
        {
            _channel.Dispose();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or MultiplexingProtocolException)
        {
            // The channel or its connection is gone either way.
        }
    }

    private async Task WatchChannelAsync()
    {
        try
        {
            await _channel.Completion.ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Whatever ended the channel, it is closed: only that matters here.
        catch (Exception)
#pragma warning restore CA1031
        {
        }

        try
        {
            // After an orderly close the receive loop drains what is left; after a break-glass one it is cancelled.
            await _receiveLoop.WaitAsync(_options.CloseLinger, _options.TimeProvider).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            await _lifetime.CancelAsync().ConfigureAwait(false);
        }
        finally
        {
            _closed.TrySetResult();
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var input = _channel.Input;
        var writer = _inbound.Writer;
        var ended = false;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(_lifetime.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                var pending = 0L;
                while (true)
                {
                    var status = TryReadFrame(ref buffer, out var type, out var length, out var payload);
                    if (status == 0)
                    {
                        break;
                    }

                    if (status > 0 && Volatile.Read(ref _onOpened) is { } onOpened)
                    {
                        if (type != OpenFrame || length != 0)
                        {
                            input.AdvanceTo(buffer.Start);
                            Fail(new TransportException(TransportErrorKind.ProtocolViolation, $"Stream with {RemoteAddress}: the peer's first frame is not an open frame (type {type}, length {length})."));
                            return;
                        }

                        Volatile.Write(ref _onOpened, null);
                        onOpened(this);
                        continue;
                    }

                    switch (status > 0 ? type : (byte)255)
                    {
                        case DataFrame when !ended:
                            if (_localAbortReason is null && !_disposed)
                            {
                                foreach (var segment in payload)
                                {
                                    writer.Write(segment.Span);
                                }

                                pending += payload.Length;
                            }

                            break;
                        case EndFrame when length == 0 && !ended:
                            ended = true;
                            break;
                        case AbortFrame:
                            var reason = Encoding.UTF8.GetString(payload);
                            input.AdvanceTo(buffer.Start);
                            lock (_stateLock)
                            {
                                if (_localAbortReason is null)
                                {
                                    _peerAbortReason ??= reason;
                                }
                            }

                            writer.Complete(TransportException.AbortedByPeer(RemoteAddress, reason));
                            _peerDone.TrySetResult();
                            _channel.Output.CancelPendingFlush();
                            CloseChannel();
                            return;
                        default:
                            input.AdvanceTo(buffer.Start);
                            Fail(new TransportException(TransportErrorKind.ProtocolViolation, $"Stream with {RemoteAddress}: the peer sent an invalid frame (type {type}, length {length}{(ended ? ", after ending its writes" : string.Empty)})."));
                            return;
                    }
                }

                input.AdvanceTo(buffer.Start, buffer.End);
                if (pending > 0)
                {
                    var flush = await writer.FlushAsync(_lifetime.Token).ConfigureAwait(false);
                    if (flush.IsCompleted)
                    {
                        return;
                    }
                }

                if (ended && !_peerDone.Task.IsCompleted)
                {
                    // Keep reading after the peer's end: an abort frame may still follow.
                    writer.Complete();
                    _peerDone.TrySetResult();
                }

                if (result.IsCompleted)
                {
                    if (!ended && _localAbortReason is null && !_disposed)
                    {
                        Fail(_connection.Failure ?? new TransportException(TransportErrorKind.ConnectionReset, $"Stream with {RemoteAddress} closed by the peer without ending its writes or giving an abort reason (its channel of the multiplexed connection was closed)."));
                    }

                    return;
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or MultiplexingProtocolException)
        {
            if (!ended && _localAbortReason is null && !_disposed)
            {
                Fail(_connection.Failure ?? new TransportException(TransportErrorKind.ConnectionReset, $"Stream with {RemoteAddress} reset (the multiplexed connection or its channel broke): {e.Message}", e));
            }
        }
        finally
        {
            writer.Complete();
            _peerDone.TrySetResult();
        }
    }

    /// <summary>Cuts one frame off <paramref name="buffer"/>: 1 a frame, 0 more bytes needed, -1 a length no frame may have.</summary>
    private static int TryReadFrame(ref ReadOnlySequence<byte> buffer, out byte type, out uint length, out ReadOnlySequence<byte> payload)
    {
        type = 0;
        length = 0;
        payload = default;
        if (buffer.Length < HeaderBytes)
        {
            return 0;
        }

        Span<byte> header = stackalloc byte[HeaderBytes];
        buffer.Slice(0, HeaderBytes).CopyTo(header);
        type = header[0];
        length = BinaryPrimitives.ReadUInt32LittleEndian(header[1..]);
        var max = type == AbortFrame ? MaxReasonBytes : MaxDataFrame;
        if (length > max)
        {
            return -1;
        }

        if (buffer.Length < HeaderBytes + length)
        {
            return 0;
        }

        payload = buffer.Slice(HeaderBytes, length);
        buffer = buffer.Slice(HeaderBytes + length);
        return 1;
    }

    private TransportException Broken(Exception e) =>
        _broken ?? _connection.Failure ?? new TransportException(TransportErrorKind.ConnectionReset, $"Stream with {RemoteAddress} reset (the multiplexed connection or its channel broke): {e.Message}", e);

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_localAbortReason is { } local)
        {
            throw TransportException.AbortedLocally(RemoteAddress, local);
        }

        if (_peerAbortReason is { } remote)
        {
            throw TransportException.AbortedByPeer(RemoteAddress, remote);
        }

        if (_broken is { } broken)
        {
            throw broken;
        }
    }
}
