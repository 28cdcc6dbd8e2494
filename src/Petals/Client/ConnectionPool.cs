using Petals.Discovery;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <summary>
/// The connections of one remote sequence, one per server (by its announced peer id), shared by its sessions and
/// stateless calls: a connection is reused while it works, a broken one is retired and replaced by a new one on the next
/// use, and every new one is checked against the server's announcement before it is handed out.
/// </summary>
/// <remarks>Thread-safe. Disposing closes every connection it ever handed out.</remarks>
internal sealed class ConnectionPool : IAsyncDisposable
{
    private readonly ITransport _transport;
    private readonly ModelConfig _config;
    private readonly string _modelId;
    private readonly RemoteSequenceOptions _options;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, RemoteSpanConnection> _pool = new(StringComparer.Ordinal);
    private readonly Dictionary<RemoteSpanConnection, string> _keys = [];
    private readonly List<RemoteSpanConnection> _all = [];
    private readonly bool _checkPeerIds;
    private long _retiredSent;
    private long _retiredReceived;
    private bool _disposed;

    /// <summary>Creates an empty pool.</summary>
    /// <param name="transport">How servers are reached.</param>
    /// <param name="config">The model (for the hidden-size check).</param>
    /// <param name="modelId">The model id named in handshakes and checked in infos.</param>
    /// <param name="options">The client's options (peer id, codec, limits, timeouts; validated).</param>
    /// <param name="checkPeerIds">
    /// Whether a new connection's handshake must give the announced peer id: true for servers found through discovery;
    /// false for servers given by address, whose identity is their address (servers started without an identity may
    /// share a default peer id, and one restarted at its address may come back with another).
    /// </param>
    public ConnectionPool(ITransport transport, ModelConfig config, string modelId, RemoteSequenceOptions options, bool checkPeerIds = true)
    {
        _checkPeerIds = checkPeerIds;
        _transport = transport;
        _config = config;
        _modelId = modelId;
        _options = options;
    }

    /// <summary>Bytes sent over every connection of the pool, closed ones included.</summary>
    public long BytesSent
    {
        get
        {
            lock (_lock)
            {
                return _retiredSent + _all.Sum(c => c.Connection.BytesSent);
            }
        }
    }

    /// <summary>Bytes received over every connection of the pool, closed ones included.</summary>
    public long BytesReceived
    {
        get
        {
            lock (_lock)
            {
                return _retiredReceived + _all.Sum(c => c.Connection.BytesReceived);
            }
        }
    }

    /// <summary>Connects to <paramref name="address"/> (no announcement to check against: a server given by address).</summary>
    /// <exception cref="TransportException">The server cannot be reached.</exception>
    /// <exception cref="ProtocolException">The handshake fails.</exception>
    /// <exception cref="TimeoutException">The server does not answer within the connect timeout.</exception>
    public Task<RemoteSpanConnection> ConnectAsync(PeerAddress address, CancellationToken cancellationToken) =>
        RemoteSpanConnection.ConnectAsync(_transport, address, new ConnectionPreamble(_options.PeerId, _modelId, _options.Limits.MaxFrameSize), _options, cancellationToken);

    /// <summary>Adds a connection made by <see cref="ConnectAsync"/> as the server <paramref name="peerId"/>'s; the pool owns it from now on.</summary>
    public void Add(string peerId, RemoteSpanConnection connection)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _all.Add(connection);
            if (_pool.TryAdd(peerId, connection))
            {
                _keys[connection] = peerId;
            }
        }
    }

    /// <summary>Throws when the pool is disposed (its sequence was closed).</summary>
    /// <exception cref="ObjectDisposedException">The pool is disposed.</exception>
    public void ThrowIfDisposed()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
        }
    }

    /// <summary>Whether <paramref name="connection"/> is the pooled connection of its server (tests).</summary>
    public bool Pools(RemoteSpanConnection connection)
    {
        lock (_lock)
        {
            return _keys.TryGetValue(connection, out var peer) && _pool.TryGetValue(peer, out var pooled) && ReferenceEquals(pooled, connection);
        }
    }

    /// <summary>
    /// A connection to <paramref name="server"/> to run <paramref name="blocks"/>: the pooled one while it works, else a
    /// new one checked against the announcement (peer id, span) and the model (id, hidden size, codec), then pooled.
    /// </summary>
    /// <exception cref="RemoteChainException">The server is not as announced or cannot serve this model.</exception>
    /// <exception cref="TransportException">The server cannot be reached.</exception>
    /// <exception cref="ProtocolException">The handshake fails.</exception>
    /// <exception cref="TimeoutException">The server does not answer within the connect timeout.</exception>
    /// <exception cref="ObjectDisposedException">The pool is disposed.</exception>
    public async Task<RemoteSpanConnection> AcquireAsync(ServerInfo server, BlockRange blocks, CancellationToken cancellationToken)
    {
        RemoteSpanConnection? retired = null;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_pool.TryGetValue(server.PeerId, out var pooled))
            {
                if (!pooled.IsFailed)
                {
                    return CheckPooled(pooled, server, blocks);
                }

                _pool.Remove(server.PeerId);
                _keys.Remove(pooled);
                retired = Forget(pooled);
            }
        }

        if (retired is not null)
        {
            await retired.DisposeAsync().ConfigureAwait(false);
        }

        var span = await ConnectAsync(server.Address, cancellationToken).ConfigureAwait(false);
        if (ServerChecks.AnnouncementProblems(span, server, blocks, _config, _modelId, _options.Codec, _checkPeerIds, _options.RequiredQuantization) is { } problems)
        {
            await span.DisposeAsync().ConfigureAwait(false);
            lock (_lock)
            {
                // The handshake and info call were traffic of this sequence too.
                _retiredSent += span.Connection.BytesSent;
                _retiredReceived += span.Connection.BytesReceived;
            }

            throw new RemoteChainException(problems);
        }

        lock (_lock)
        {
            if (_disposed)
            {
                retired = span;
            }
            else if (_pool.TryGetValue(server.PeerId, out var raced) && !raced.IsFailed)
            {
                // Another session connected to the same server meanwhile: share that connection.
                retired = span;
                span = raced;
            }
            else
            {
                if (_pool.Remove(server.PeerId, out var failed))
                {
                    _keys.Remove(failed);
                }

                _pool[server.PeerId] = span;
                _keys[span] = server.PeerId;
                _all.Add(span);
            }
        }

        if (retired is not null)
        {
            await retired.DisposeAsync().ConfigureAwait(false);
            ObjectDisposedException.ThrowIf(ReferenceEquals(retired, span), this);
        }

        return span;
    }

    /// <summary>
    /// Takes a connection that broke out of the pool and aborts it, so that the next use of its server connects anew: a
    /// send can fail on a broken stream before the read loop has marked the connection failed. A connection that only
    /// carried an error answer or a timeout stays (a server that said it is shutting down has marked its connection
    /// failed itself, so the next use connects anew).
    /// </summary>
    /// <param name="connection">The connection a call failed on.</param>
    /// <param name="error">How it failed.</param>
    public void Retire(RemoteSpanConnection connection, Exception error)
    {
        if (error is not (TransportException or IOException or ObjectDisposedException or ProtocolException { IsConnectionFatal: true }))
        {
            return;
        }

        bool owned;
        lock (_lock)
        {
            if (_keys.Remove(connection, out var peer) && _pool.TryGetValue(peer, out var pooled) && ReferenceEquals(pooled, connection))
            {
                _pool.Remove(peer);
            }

            owned = _all.Contains(connection);
            if (owned)
            {
                Forget(connection);
            }
        }

        connection.Connection.Abort("the client gave the connection up after a failure");
        if (owned)
        {
            // Released now rather than at the pool's end: a long-lived sequence with many failures keeps no dead timers.
            _ = ReleaseAsync(connection);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        RemoteSpanConnection[] all;
        lock (_lock)
        {
            _disposed = true;
            all = [.. _all];
        }

        foreach (var connection in all)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A pooled connection is checked once, when it was made; a request for blocks outside its span is still refused.</summary>
    private static RemoteSpanConnection CheckPooled(RemoteSpanConnection pooled, ServerInfo server, BlockRange blocks)
    {
        if (blocks.Start < pooled.Info.Blocks.Start || blocks.End > pooled.Info.Blocks.End || pooled.Info.Blocks != server.Span)
        {
            throw new RemoteChainException($"{pooled.Name} serves blocks {pooled.Info.Blocks}; it is announced with {server.Span} and asked for {blocks}.");
        }

        return pooled;
    }

    private static async Task ReleaseAsync(RemoteSpanConnection connection)
    {
        try
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is Transport.TransportException or Protocol.ProtocolException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            // The connection was aborted: whatever its read loop ended with is of no interest any more.
        }
    }

    private RemoteSpanConnection Forget(RemoteSpanConnection connection)
    {
        _all.Remove(connection);
        _retiredSent += connection.Connection.BytesSent;
        _retiredReceived += connection.Connection.BytesReceived;
        return connection;
    }
}
