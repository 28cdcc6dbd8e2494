using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Petals.Transport;

namespace Petals.Testing.Transport;

/// <summary>One end of an in-memory stream: reads from the pipe the peer writes, writes to the pipe the peer reads.</summary>
internal sealed class MemoryStreamEnd : ITransportStream
{
    private const int MaxChunk = 64 * 1024;

    private readonly Pipe _inbound;
    private readonly Pipe _outbound;
    private readonly Lock _writeLock = new();
    private MemoryStreamEnd _peer = null!;
    private volatile string? _localAbortReason;
    private volatile string? _peerAbortReason;
    private bool _writesCompleted;
    private volatile bool _disposed;

    private MemoryStreamEnd(Pipe inbound, Pipe outbound, PeerAddress remoteAddress)
    {
        _inbound = inbound;
        _outbound = outbound;
        RemoteAddress = remoteAddress;
    }

    public PeerAddress RemoteAddress { get; }

    public static (MemoryStreamEnd Client, MemoryStreamEnd Server) CreatePair(PeerAddress serverAddress, PeerAddress clientAddress, int bufferBytes)
    {
        var options = new PipeOptions(pauseWriterThreshold: bufferBytes, resumeWriterThreshold: bufferBytes / 2, useSynchronizationContext: false);
        var toServer = new Pipe(options);
        var toClient = new Pipe(options);
        var client = new MemoryStreamEnd(toClient, toServer, serverAddress);
        var server = new MemoryStreamEnd(toServer, toClient, clientAddress);
        client._peer = server;
        server._peer = client;
        return (client, server);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
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
                continue;
            }

            var data = result.Buffer;
            var n = (int)Math.Min(data.Length, buffer.Length);
            var slice = data.Slice(0, n);
            slice.CopyTo(buffer.Span);
            _inbound.Reader.AdvanceTo(slice.End);
            if (n > 0 || result.IsCompleted)
            {
                if (n == 0)
                {
                    ThrowIfUnusable();
                }

                return n;
            }
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            ThrowIfUnusable();
            ObjectDisposedException.ThrowIf(_disposed, this);
            var n = Math.Min(buffer.Length, MaxChunk);
            lock (_writeLock)
            {
                ThrowIfUnusable();
                if (_writesCompleted)
                {
                    throw new InvalidOperationException($"Writes to the stream with {RemoteAddress} were already completed.");
                }

                _outbound.Writer.Write(buffer.Span[..n]);
            }

            var result = await _outbound.Writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            ThrowIfUnusable();
            if (result.IsCompleted)
            {
                throw TransportException.AbortedByPeer(RemoteAddress, "peer closed the stream");
            }

            buffer = buffer[n..];
            if (buffer.IsEmpty)
            {
                return;
            }
        }
    }

    public ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ThrowIfUnusable();
        lock (_writeLock)
        {
            if (!_writesCompleted)
            {
                _writesCompleted = true;
                _outbound.Writer.Complete();
            }
        }

        return ValueTask.CompletedTask;
    }

    public void Abort(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        lock (_writeLock)
        {
            if (_localAbortReason is not null || _peerAbortReason is not null)
            {
                return;
            }

            _localAbortReason = reason;
            _peer._peerAbortReason = reason;
            _outbound.Writer.Complete(TransportException.AbortedByPeer(_peer.RemoteAddress, reason));
        }

        // Wake whoever waits: our pending read and write, and the peer's pending write.
        _inbound.Reader.CancelPendingRead();
        _outbound.Writer.CancelPendingFlush();
        _inbound.Writer.CancelPendingFlush();
    }

    public ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return ValueTask.CompletedTask;
        }

        bool completed;
        lock (_writeLock)
        {
            completed = _writesCompleted;
        }

        if (!completed)
        {
            Abort("stream disposed");
        }

        _disposed = true;
        _inbound.Reader.Complete();
        return ValueTask.CompletedTask;
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;
    }

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
