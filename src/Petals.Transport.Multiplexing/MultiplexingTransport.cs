using System.Collections.Concurrent;

namespace Petals.Transport.Multiplexing;

/// <summary>
/// A transport decorator that carries many logical streams over one physical connection per remote address (its peer
/// id included): the first connect to an address opens an inner stream and a Nerdbank multiplexer over it, later ones
/// open channels on it; a broken connection is replaced on the next connect. Listening wraps the inner listener.
/// </summary>
/// <remarks>Thread-safe. Disposing it closes every pooled connection (their streams fail with <see cref="TransportErrorKind.ConnectionReset"/>).</remarks>
internal sealed class MultiplexingTransport : DelegatingTransport, IAsyncDisposable, IDisposable
{
    private readonly MultiplexingTransportOptions _options;
    private readonly ConcurrentDictionary<PeerAddress, Lazy<Task<MuxConnection>>> _pool = new();
    private long _connects;
    private volatile bool _disposed;

    public MultiplexingTransport(ITransport inner, MultiplexingTransportOptions options)
        : base(inner)
    {
        _options = options;
    }

    /// <summary>How many physical connections this transport has opened (for tests and diagnostics).</summary>
    public long PhysicalConnects => Interlocked.Read(ref _connects);

    /// <summary>How many physical connections the pool holds now.</summary>
    public int PooledConnections => _pool.Count;

    /// <summary>How many streams the pooled connections carry now.</summary>
    public int OpenChannels
    {
        get
        {
            var sum = 0;
            foreach (var entry in _pool)
            {
                if (entry.Value.Value.IsCompletedSuccessfully)
                {
                    sum += entry.Value.Value.Result.ChannelCount;
                }
            }

            return sum;
        }
    }

    public override async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (address.IsEmpty)
        {
            throw new ArgumentException("The peer address is empty.", nameof(address));
        }

        cancellationToken.ThrowIfCancellationRequested();

        // A pooled connection may have been closed by the peer (its idle timeout) just as we use it: try a fresh one once.
        for (var attempt = 0; ; attempt++)
        {
            var (connection, fresh) = await GetConnectionAsync(address, cancellationToken).ConfigureAwait(false);
            try
            {
                return await connection.OpenChannelAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (TransportException e) when (e.Kind == TransportErrorKind.ConnectionReset && !fresh && attempt == 0)
            {
                Evict(address, connection);
            }
            catch (TransportException e) when (e.Kind == TransportErrorKind.ConnectionReset)
            {
                Evict(address, connection);
                throw;
            }
        }
    }

    public override async ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var inner = await InnerTransport.ListenAsync(bindAddress, cancellationToken).ConfigureAwait(false);
        return new MuxListener(inner, _options);
    }

    public override object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is null && serviceType == typeof(MultiplexingTransportOptions) ? _options : base.GetService(serviceType, serviceKey);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        var closing = new List<Task>();
        foreach (var entry in _pool)
        {
            if (entry.Value.Value.IsCompletedSuccessfully)
            {
                closing.Add(entry.Value.Value.Result.DisposeAsync().AsTask());
            }
        }

        _pool.Clear();
        await Task.WhenAll(closing).ConfigureAwait(false);
    }

    /// <summary>Starts closing every pooled connection without waiting (for containers that dispose synchronously).</summary>
    public void Dispose() => _ = DisposeAsync().AsTask();

    private async ValueTask<(MuxConnection Connection, bool Fresh)> GetConnectionAsync(PeerAddress address, CancellationToken cancellationToken)
    {
        while (true)
        {
            var created = false;
            var lazy = _pool.GetOrAdd(address, a =>
            {
                created = true;
                return new Lazy<Task<MuxConnection>>(() => OpenAsync(a), LazyThreadSafetyMode.ExecutionAndPublication);
            });
            MuxConnection connection;
            try
            {
                // The connect runs without the caller's token (others may share it); each caller waits with its own.
                connection = await lazy.Value.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // A failed connect leaves the pool; so does one this caller gave up on (its timeout): the next caller
                // starts a fresh connect instead of joining one that may never finish (a peer that accepts and stays
                // silent). Callers already waiting on the abandoned one keep it; unused, it closes when idle.
                _pool.TryRemove(new KeyValuePair<PeerAddress, Lazy<Task<MuxConnection>>>(address, lazy));
                throw;
            }

            if (!connection.IsClosed)
            {
                return (connection, created);
            }

            _pool.TryRemove(new KeyValuePair<PeerAddress, Lazy<Task<MuxConnection>>>(address, lazy));
        }
    }

    private async Task<MuxConnection> OpenAsync(PeerAddress address)
    {
        var inner = await InnerTransport.ConnectAsync(address).ConfigureAwait(false);
        Interlocked.Increment(ref _connects);
        var connection = new MuxConnection(inner, address, _options, onAccepted: null);
        _ = connection.Closed.ContinueWith(_ => Evict(address, connection), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        if (_disposed)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw new ObjectDisposedException(nameof(MultiplexingTransport));
        }

        return connection;
    }

    private void Evict(PeerAddress address, MuxConnection connection)
    {
        if (_pool.TryGetValue(address, out var lazy) && lazy.Value.IsCompletedSuccessfully && ReferenceEquals(lazy.Value.Result, connection))
        {
            _pool.TryRemove(new KeyValuePair<PeerAddress, Lazy<Task<MuxConnection>>>(address, lazy));
        }
    }
}
