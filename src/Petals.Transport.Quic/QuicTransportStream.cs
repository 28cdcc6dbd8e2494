using System.Net.Quic;
using System.Runtime.Versioning;

namespace Petals.Transport.Quic;

/// <summary>
/// One bidirectional QUIC stream on its own connection. Reads go through a pending-read task so that a caller's
/// cancellation does not abort the QUIC read direction (System.Net.Quic aborts a stream's reads when a read is cancelled).
/// </summary>
[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("macos")]
internal sealed class QuicTransportStream : ITransportStream
{
    internal const byte Preamble = 0x50;

    private readonly QuicConnection _connection;
    private readonly QuicStream _stream;
    private readonly byte[] _readBuffer = new byte[64 * 1024];
    private readonly Lock _stateLock = new();
    private Task<int>? _pendingRead;
    private int _bufferedStart;
    private int _bufferedEnd;
    private volatile string? _localAbortReason;
    private volatile bool _writesCompleted;
    private volatile bool _disposed;

    public QuicTransportStream(QuicConnection connection, QuicStream stream, PeerAddress remoteAddress)
    {
        _connection = connection;
        _stream = stream;
        RemoteAddress = remoteAddress;
    }

    public PeerAddress RemoteAddress { get; }

    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty)
        {
            throw new ArgumentException("The buffer must not be empty.", nameof(buffer));
        }

        ThrowIfUnusable();
        if (_bufferedEnd == _bufferedStart)
        {
            // Not the caller's token: cancelling a QUIC read aborts the stream's read side.
            _pendingRead ??= _stream.ReadAsync(_readBuffer, CancellationToken.None).AsTask();
            int n;
            try
            {
                n = await _pendingRead.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception e) when (e is QuicException or OperationCanceledException or ObjectDisposedException)
            {
                _pendingRead = null;
                ThrowIfUnusable();
                throw Map(e);
            }

            _pendingRead = null;
            if (n == 0)
            {
                return 0;
            }

            _bufferedStart = 0;
            _bufferedEnd = n;
        }

        var count = Math.Min(buffer.Length, _bufferedEnd - _bufferedStart);
        _readBuffer.AsSpan(_bufferedStart, count).CopyTo(buffer.Span);
        _bufferedStart += count;
        return count;
    }

    public async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        if (_writesCompleted)
        {
            throw new InvalidOperationException($"Writes to the stream with {RemoteAddress} were already completed.");
        }

        try
        {
            await _stream.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            ThrowIfUnusable();
            throw Map(e);
        }
    }

    public ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        if (!_writesCompleted)
        {
            _writesCompleted = true;
            _stream.CompleteWrites();
        }

        return ValueTask.CompletedTask;
    }

    public void Abort(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        lock (_stateLock)
        {
            if (_localAbortReason is not null || _disposed)
            {
                return;
            }

            _localAbortReason = reason;
        }

        _stream.Abort(QuicAbortDirection.Both, QuicTransport.AbortErrorCode);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        if (!_writesCompleted && _localAbortReason is null)
        {
            Abort("stream disposed");
        }

        _disposed = true;
        await _stream.DisposeAsync().ConfigureAwait(false);
        try
        {
            await _connection.CloseAsync(QuicTransport.CloseErrorCode).ConfigureAwait(false);
        }
        catch (QuicException)
        {
            // The connection is gone either way.
        }

        await _connection.DisposeAsync().ConfigureAwait(false);
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        return serviceType.IsInstanceOfType(this) ? this : serviceType == typeof(QuicConnection) ? _connection : null;
    }

    private TransportException Map(Exception e) => e is QuicException q && q.QuicError is QuicError.StreamAborted or QuicError.ConnectionAborted
        ? new TransportException(TransportErrorKind.Aborted, $"Stream with {RemoteAddress} aborted by peer (QUIC application error {q.ApplicationErrorCode}; QUIC carries no reason text)", e)
        : new TransportException(TransportErrorKind.ConnectionReset, $"Connection to {RemoteAddress} reset: {e.Message}", e);

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_localAbortReason is { } local)
        {
            throw TransportException.AbortedLocally(RemoteAddress, local);
        }
    }
}
