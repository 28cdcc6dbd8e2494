using System.Threading.Channels;

namespace Petals.Transport.Multiplexing;

/// <summary>
/// Wraps an inner listener: every accepted physical connection becomes a multiplexed one, and every channel a peer
/// opens on it is handed out by <see cref="AcceptAsync"/>. Disposing it stops accepting connections and channels;
/// streams already accepted stay open, and each connection closes once its last stream is done.
/// </summary>
internal sealed class MuxListener : ITransportListener
{
    private readonly ITransportListener _inner;
    private readonly MultiplexingTransportOptions _options;
    private readonly Channel<MuxChannelStream> _accepted = Channel.CreateUnbounded<MuxChannelStream>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = false });
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private readonly HashSet<MuxConnection> _connections = [];
    private readonly Task _acceptLoop;
    private volatile bool _disposed;

    public MuxListener(ITransportListener inner, MultiplexingTransportOptions options)
    {
        _inner = inner;
        _options = options;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public PeerAddress LocalAddress => _inner.LocalAddress;

    /// <summary>How many physical connections this listener holds now.</summary>
    public int ConnectionCount
    {
        get
        {
            lock (_lock)
            {
                return _connections.Count;
            }
        }
    }

    public async ValueTask<ITransportStream> AcceptAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            return await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException(nameof(MuxListener), $"The multiplexing listener at {LocalAddress} was disposed.");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _accepted.Writer.TryComplete();
        await _stop.CancelAsync().ConfigureAwait(false);
        await _inner.DisposeAsync().ConfigureAwait(false);
        await _acceptLoop.ConfigureAwait(false);

        // Channels accepted but never taken are refused now; connections close when their last stream is done.
        while (_accepted.Reader.TryRead(out var orphan))
        {
            orphan.Abort("the listener closed");
            await orphan.DisposeAsync().ConfigureAwait(false);
        }

        MuxConnection[] connections;
        lock (_lock)
        {
            connections = [.. _connections];
        }

        foreach (var connection in connections)
        {
            connection.CloseWhenIdle();
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            ITransportStream inner;
            try
            {
                inner = await _inner.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (TransportException)
            {
                // One failed handshake (e.g. a TLS peer that gave up) does not stop the listener.
                continue;
            }

            var connection = new MuxConnection(inner, inner.RemoteAddress, _options, stream => !_disposed && _accepted.Writer.TryWrite(stream));
            lock (_lock)
            {
                _connections.Add(connection);
            }

            _ = connection.Closed.ContinueWith(
                static (_, state) =>
                {
                    var (listener, c) = ((MuxListener, MuxConnection))state!;
                    lock (listener._lock)
                    {
                        listener._connections.Remove(c);
                    }
                },
                (this, connection),
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
            if (_disposed)
            {
                connection.CloseWhenIdle();
            }
        }
    }
}
