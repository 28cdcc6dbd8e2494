// Over 500 lines on purpose: the socket's two pumps, the optional TLS layer, half-close and abort share one stream's
// state and its ordering rules; each part alone would not be a stream.
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using System.Text;

namespace Petals.Transport.Tcp;

/// <summary>
/// One stream over one TCP (or TLS) connection. Frames: a 5-byte header (type, little-endian uint32 length)
/// then the payload. Types: data (at most <see cref="MaxDataFrame"/> bytes), end of writes (empty), abort
/// (a UTF-8 reason of at most <see cref="MaxReasonBytes"/>). A background loop parses incoming frames into a
/// pipe (bounded: back-pressure reaches the sender through TCP), so an abort from the peer is seen even by a
/// side that only writes.
/// </summary>
internal sealed class TcpFramedStream : ITransportStream, IValueTaskSource<int>
{
    internal const int HeaderBytes = 5;
    internal const int MaxDataFrame = 1 << 20;
    internal const int MaxReasonBytes = 1024;
    internal const byte DataFrame = 0;
    internal const byte EndFrame = 1;
    internal const byte AbortFrame = 2;
    private const int SmallWrite = 16 * 1024;
    private static readonly TimeSpan AbortLinger = TimeSpan.FromSeconds(5);

    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly Pipe _inbound;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Lock _stateLock = new();
    private readonly CancellationTokenSource _writeCancel = new();
    private readonly CancellationTokenSource _lifetime = new();
    private readonly byte[] _header = new byte[HeaderBytes];
    private readonly Task _receiveLoop;
    private volatile string? _localAbortReason;
    private volatile string? _peerAbortReason;
    private volatile TransportException? _broken;
    private volatile bool _writesCompleted;
    private volatile bool _disposed;
    private Task? _abortTask;
    private readonly Action _onPipeRead;
    private ManualResetValueTaskSourceCore<int> _readCore = new() { RunContinuationsAsynchronously = true };
    private ConfiguredValueTaskAwaitable<ReadResult>.ConfiguredValueTaskAwaiter _pipeAwaiter;
    private Memory<byte> _readBuffer;
    private CancellationToken _readToken;

    private readonly AuthenticatedPeer? _authenticated;
    private readonly Action? _onClosed;
    private int _closedSignaled;

    public TcpFramedStream(Socket socket, Stream stream, PeerAddress remoteAddress, int receiveBufferBytes, AuthenticatedPeer? authenticated = null, Action? onClosed = null)
    {
        _authenticated = authenticated;
        _onClosed = onClosed;
        _socket = socket;
        _stream = stream;
        RemoteAddress = remoteAddress;
        _inbound = new Pipe(new PipeOptions(pauseWriterThreshold: receiveBufferBytes, resumeWriterThreshold: receiveBufferBytes / 2, useSynchronizationContext: false));
        _onPipeRead = OnPipeRead;
        _receiveLoop = Task.Run(ReceiveLoopAsync);
    }

    public PeerAddress RemoteAddress { get; }

    public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty)
        {
            throw new ArgumentException("The buffer must not be empty.", nameof(buffer));
        }

        // One reusable completion source per stream (one read at a time): a read that has to wait allocates nothing.
        while (true)
        {
            ThrowIfUnusable();
#pragma warning disable CA2012 // Consumed exactly once: either awaited through _pipeAwaiter or read synchronously below.
            var pending = _inbound.Reader.ReadAsync(cancellationToken);
#pragma warning restore CA2012
            if (!pending.IsCompleted)
            {
                _readBuffer = buffer;
                _readToken = cancellationToken;
                _readCore.Reset();
                _pipeAwaiter = pending.ConfigureAwait(false).GetAwaiter();
                _pipeAwaiter.UnsafeOnCompleted(_onPipeRead);
                return new ValueTask<int>(this, _readCore.Version);
            }

            ReadResult result;
            try
            {
                result = pending.GetAwaiter().GetResult();
            }
            catch (TransportException)
            {
                ThrowIfUnusable();
                throw;
            }

            if (TryConsume(result, buffer, out var n))
            {
                return new ValueTask<int>(n);
            }
        }
    }

    int IValueTaskSource<int>.GetResult(short token) => _readCore.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _readCore.GetStatus(token);

    void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _readCore.OnCompleted(continuation, state, token, flags);

    private void OnPipeRead()
    {
        try
        {
            while (true)
            {
                ReadResult result;
                try
                {
                    result = _pipeAwaiter.GetResult();
                }
                catch (TransportException)
                {
                    ThrowIfUnusable();
                    throw;
                }

                if (TryConsume(result, _readBuffer, out var n))
                {
                    _readBuffer = default;
                    _readCore.SetResult(n);
                    return;
                }

                ThrowIfUnusable();
#pragma warning disable CA2012 // Consumed exactly once, through _pipeAwaiter.
                _pipeAwaiter = _inbound.Reader.ReadAsync(_readToken).ConfigureAwait(false).GetAwaiter();
#pragma warning restore CA2012
                if (!_pipeAwaiter.IsCompleted)
                {
                    _pipeAwaiter.UnsafeOnCompleted(_onPipeRead);
                    return;
                }
            }
        }
        catch (Exception e)
        {
            _readBuffer = default;
            _readCore.SetException(e);
        }
    }

    /// <summary>Copies what the pipe holds; false when the read was woken without data (an abort) and must go on.</summary>
    private bool TryConsume(ReadResult result, Memory<byte> buffer, out int count)
    {
        count = 0;
        if (result.IsCanceled)
        {
            return false;
        }

        var data = result.Buffer;
        count = (int)Math.Min(data.Length, buffer.Length);
        var slice = data.Slice(0, count);
        slice.CopyTo(buffer.Span);
        _inbound.Reader.AdvanceTo(slice.End);
        if (count > 0)
        {
            return true;
        }

        if (result.IsCompleted)
        {
            ThrowIfUnusable();
            return true;
        }

        return false;
    }

    public ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        if (_writesCompleted)
        {
            throw new InvalidOperationException($"Writes to the stream with {RemoteAddress} were already completed.");
        }

        // Fast path without a state machine: a small frame that the socket takes at once (the usual case for
        // one generation step) allocates nothing.
        if (buffer.Length <= SmallWrite && !cancellationToken.CanBeCanceled && _stream is NetworkStream && _writeLock.Wait(0, CancellationToken.None))
        {
            var released = false;
            try
            {
                ThrowIfUnusable();
                var pending = WriteFrameAsync(DataFrame, buffer, _writeCancel.Token);
                if (pending.IsCompletedSuccessfully)
                {
                    pending.GetAwaiter().GetResult();
                    return ValueTask.CompletedTask;
                }

                released = true; // the slow path below owns the lock now
                return FinishWriteAsync(pending);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
            {
                ThrowIfUnusable();
                throw Broken(e);
            }
            finally
            {
                if (!released)
                {
                    _writeLock.Release();
                }
            }
        }

        return WriteSlowAsync(buffer, cancellationToken);
    }

    private async ValueTask FinishWriteAsync(ValueTask pending)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            ThrowIfUnusable();
            throw Broken(e);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async ValueTask WriteSlowAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfUnusable();

            // A linked token source only when the caller can cancel: no allocation per write otherwise.
            using var linked = cancellationToken.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _writeCancel.Token) : null;
            var token = linked?.Token ?? _writeCancel.Token;
            while (!buffer.IsEmpty)
            {
                var n = Math.Min(buffer.Length, MaxDataFrame);
                await WriteFrameAsync(DataFrame, buffer[..n], token).ConfigureAwait(false);
                buffer = buffer[n..];
            }

            await _stream.FlushAsync(token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            ThrowIfUnusable();
            throw Broken(e);
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
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _writeCancel.Token);
            await WriteFrameAsync(EndFrame, ReadOnlyMemory<byte>.Empty, linked.Token).ConfigureAwait(false);
            await _stream.FlushAsync(linked.Token).ConfigureAwait(false);
            _writesCompleted = true;
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            ThrowIfUnusable();
            throw Broken(e);
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
            if (_localAbortReason is not null || _peerAbortReason is not null || _disposed)
            {
                return;
            }

            _localAbortReason = reason;
            _abortTask = Task.Run(() => SendAbortAndCloseAsync(reason));
        }

        // Wake our own pending read; let the receive loop stop buffering.
        _inbound.Reader.CancelPendingRead();
        _inbound.Writer.CancelPendingFlush();
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        if (!_writesCompleted && _localAbortReason is null && _peerAbortReason is null && _broken is null)
        {
            Abort("stream disposed");
        }

        Task? abort;
        lock (_stateLock)
        {
            _disposed = true;
            abort = _abortTask;
        }

        if (abort is not null)
        {
            await abort.ConfigureAwait(false);
        }

        await _lifetime.CancelAsync().ConfigureAwait(false);
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed.
        }

        try
        {
            await _stream.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // The connection is gone either way.
        }

        _socket.Dispose();
        if (_onClosed is not null && Interlocked.Exchange(ref _closedSignaled, 1) == 0)
        {
            // The descriptor is free again (a listener counts its open connections against the descriptor limit).
            _onClosed();
        }

        await _receiveLoop.ConfigureAwait(false);
        _inbound.Reader.Complete();
        _writeCancel.Dispose();
        _lifetime.Dispose();
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        return serviceType.IsInstanceOfType(this) ? this
            : serviceType == typeof(Socket) ? _socket
            : serviceType == typeof(AuthenticatedPeer) ? _authenticated
            : null;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteFrameAsync(byte type, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (payload.Length <= SmallWrite)
        {
            // One send for header and payload: with Nagle off, separate writes would be separate packets.
            var frame = ArrayPool<byte>.Shared.Rent(HeaderBytes + payload.Length);
            try
            {
                frame[0] = type;
                BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(1), (uint)payload.Length);
                payload.Span.CopyTo(frame.AsSpan(HeaderBytes));
                await _stream.WriteAsync(frame.AsMemory(0, HeaderBytes + payload.Length), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(frame);
            }

            return;
        }

        _header[0] = type;
        BinaryPrimitives.WriteUInt32LittleEndian(_header.AsSpan(1), (uint)payload.Length);
        await _stream.WriteAsync(_header, cancellationToken).ConfigureAwait(false);
        await _stream.WriteAsync(payload, cancellationToken).ConfigureAwait(false);
    }

    private async Task SendAbortAndCloseAsync(string reason)
    {
        var bytes = Encoding.UTF8.GetBytes(reason);
        if (bytes.Length > MaxReasonBytes)
        {
            bytes = bytes[..MaxReasonBytes];
        }

        // Only a frame boundary may carry the abort frame: if a write is in progress, cancel it and reset instead.
        var sent = false;
        if (await _writeLock.WaitAsync(TimeSpan.Zero).ConfigureAwait(false))
        {
            try
            {
                using var timeout = new CancellationTokenSource(AbortLinger);
                await WriteFrameAsync(AbortFrame, bytes, timeout.Token).ConfigureAwait(false);
                await _stream.FlushAsync(timeout.Token).ConfigureAwait(false);
                _socket.Shutdown(SocketShutdown.Send);
                sent = true;
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
            {
                // Fall back to a reset below.
            }
            finally
            {
                _writeLock.Release();
            }
        }

        await _writeCancel.CancelAsync().ConfigureAwait(false);
        if (sent)
        {
            // Keep receiving (and discarding) until the peer closes, so our close does not reset the
            // connection before the peer has read the abort frame.
            await Task.WhenAny(_receiveLoop, Task.Delay(AbortLinger)).ConfigureAwait(false);
        }
        else
        {
            try
            {
                _socket.LingerState = new LingerOption(true, 0);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Already closed.
            }
        }

        _socket.Dispose();
    }

    private async Task ReceiveLoopAsync()
    {
        var header = new byte[HeaderBytes];
        var writer = _inbound.Writer;
        var ended = false;
        try
        {
            while (true)
            {
                // The header is read inline (not through a helper) so this long-lived state machine is the
                // only one: no allocation per received frame.
                var got = 0;
                while (got < HeaderBytes)
                {
                    var n = await _stream.ReadAsync(header.AsMemory(got), _lifetime.Token).ConfigureAwait(false);
                    if (n == 0)
                    {
                        break;
                    }

                    got += n;
                }

                if (got > 0 && got < HeaderBytes)
                {
                    throw new EndOfStreamException("the connection ended inside a frame header");
                }

                if (got == 0)
                {
                    if (!ended && _localAbortReason is null && !_disposed)
                    {
                        Fail(new TransportException(TransportErrorKind.ConnectionReset, $"Connection to {RemoteAddress} closed by the peer without ending its writes or giving an abort reason."));
                    }

                    return;
                }

                var type = header[0];
                var length = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(1));
                switch (type)
                {
                    case DataFrame when length <= MaxDataFrame && !ended:
                        var remaining = (int)length;
                        while (remaining > 0)
                        {
                            var memory = writer.GetMemory(Math.Min(remaining, 64 * 1024));
                            var n = await _stream.ReadAsync(memory[..Math.Min(remaining, memory.Length)], _lifetime.Token).ConfigureAwait(false);
                            if (n == 0)
                            {
                                throw new EndOfStreamException("the connection ended inside a data frame");
                            }

                            remaining -= n;
                            if (_localAbortReason is not null)
                            {
                                continue; // Discard: nobody reads after a local abort.
                            }

                            writer.Advance(n);
                            var flush = await writer.FlushAsync(_lifetime.Token).ConfigureAwait(false);
                            if (flush.IsCompleted)
                            {
                                return;
                            }
                        }

                        break;
                    case EndFrame when length == 0 && !ended:
                        ended = true;
                        writer.Complete();
                        break;
                    case AbortFrame when length <= MaxReasonBytes:
                        var reasonBytes = new byte[length];
                        await ReadExactAsync(reasonBytes, allowEof: false).ConfigureAwait(false);
                        var reason = Encoding.UTF8.GetString(reasonBytes);
                        _peerAbortReason = reason;
                        writer.Complete(TransportException.AbortedByPeer(RemoteAddress, reason));
                        await _writeCancel.CancelAsync().ConfigureAwait(false);
                        _socket.Dispose();
                        return;
                    default:
                        Fail(new TransportException(TransportErrorKind.ProtocolViolation, $"Stream with {RemoteAddress}: the peer sent an invalid frame (type {type}, length {length}{(ended ? ", after ending its writes" : string.Empty)})."));
                        _socket.Dispose();
                        return;
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException or EndOfStreamException)
        {
            if (_localAbortReason is null && !_disposed)
            {
                Fail(new TransportException(TransportErrorKind.ConnectionReset, $"Connection to {RemoteAddress} reset: {e.Message}", e));
            }
        }
        finally
        {
            writer.Complete();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ReadExactAsync(byte[] buffer, bool allowEof)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await _stream.ReadAsync(buffer.AsMemory(read), _lifetime.Token).ConfigureAwait(false);
            if (n == 0)
            {
                if (allowEof && read == 0)
                {
                    return false;
                }

                throw new EndOfStreamException("the connection ended inside a frame header or abort reason");
            }

            read += n;
        }

        return true;
    }

    private void Fail(TransportException error)
    {
        _broken ??= error;
        _inbound.Writer.Complete(error);
        _writeCancel.Cancel();
    }

    private TransportException Broken(Exception e) =>
        _broken ?? new TransportException(TransportErrorKind.ConnectionReset, $"Connection to {RemoteAddress} reset: {e.Message}", e);

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
    }
}
