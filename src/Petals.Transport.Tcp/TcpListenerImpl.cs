using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Petals.Transport.Tcp;

/// <summary>
/// Accepts TCP connections in the background, runs TLS handshakes off the accept path, queues ready streams. At most
/// <see cref="TcpTransportOptions.MaxPendingStreams"/> connections are taken from the kernel and not yet accepted by
/// the caller (in a handshake or queued); beyond that the loop stops accepting and the kernel backlog applies, so
/// peers cannot make the listener buffer without bound. When the process or the system is out of file descriptors or
/// socket buffers (EMFILE, ENFILE, ENOBUFS, ENOMEM), the loop backs off (<see cref="MinAcceptBackoff"/> doubling to
/// <see cref="MaxAcceptBackoff"/>), counts the failure, logs at most one line per <see cref="AcceptFailureLogInterval"/>
/// and keeps listening: the connections wait in the kernel backlog instead of the loop spinning on failed accepts.
/// </summary>
internal sealed partial class TcpListenerImpl : ITransportListener
{
    internal static readonly TimeSpan MinAcceptBackoff = TimeSpan.FromMilliseconds(10);
    internal static readonly TimeSpan MaxAcceptBackoff = TimeSpan.FromSeconds(1);
    internal static readonly TimeSpan AcceptFailureLogInterval = TimeSpan.FromSeconds(10);
    private readonly ILogger _logger;
    private long _acceptFailures;
    private long _lastFailureLog = long.MinValue;
    private long _unloggedFailures;

    private readonly Socket _socket;
    private readonly TlsPeerIdentity? _identity;
    private readonly TcpTransportOptions _options;
    private readonly Channel<TcpFramedStream> _ready = Channel.CreateUnbounded<TcpFramedStream>();
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _slots;
    private readonly SemaphoreSlim _open;
    private readonly Action _releaseOpen;
    private long _atOpenLimit;
    private long _lastOpenLimitLog = long.MinValue / 2;
    private readonly Task _acceptLoop;
    private int _disposed;

    public TcpListenerImpl(Socket socket, PeerAddress localAddress, TlsPeerIdentity? identity, TcpTransportOptions options, ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        _socket = socket;
        LocalAddress = localAddress;
        _identity = identity;
        _options = options;
        _slots = new SemaphoreSlim(options.MaxPendingStreams, options.MaxPendingStreams);
        _open = new SemaphoreSlim(options.MaxOpenConnections, options.MaxOpenConnections);
        _releaseOpen = () => _open.Release();
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public PeerAddress LocalAddress { get; }

    /// <summary>Streams admitted and waiting for <see cref="AcceptAsync"/> (for tests).</summary>
    internal int QueuedStreams => _ready.Reader.Count;

    /// <summary>Accepts that failed for want of file descriptors or buffers (each followed by a back-off).</summary>
    internal long AcceptFailures => Interlocked.Read(ref _acceptFailures);

    /// <summary>How often the loop found <see cref="TcpTransportOptions.MaxOpenConnections"/> connections open and waited for one to close.</summary>
    internal long OpenLimitWaits => Interlocked.Read(ref _atOpenLimit);

    public async ValueTask<ITransportStream> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var stream = await _ready.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            _slots.Release();
            return stream;
        }
        catch (ChannelClosedException e)
        {
            throw new ObjectDisposedException($"The listener at {LocalAddress} was disposed.", e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _socket.Dispose();
        await _acceptLoop.ConfigureAwait(false);
        _ready.Writer.TryComplete();
        while (_ready.Reader.TryRead(out var stream))
        {
            await stream.DisposeAsync().ConfigureAwait(false);
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        var backoff = MinAcceptBackoff;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                // A slot per connection taken from the kernel, given back when the caller accepts it or it is dropped.
                await _slots.WaitAsync(_stop.Token).ConfigureAwait(false);

                // And a descriptor per open connection, given back when its stream is disposed.
                if (!_open.Wait(0))
                {
                    Interlocked.Increment(ref _atOpenLimit);
                    var now = Environment.TickCount64;
                    if (now - Interlocked.Read(ref _lastOpenLimitLog) >= (long)AcceptFailureLogInterval.TotalMilliseconds)
                    {
                        Interlocked.Exchange(ref _lastOpenLimitLog, now);
                        LogAtOpenLimit(_logger, LocalAddress, _options.MaxOpenConnections);
                    }

                    await _open.WaitAsync(_stop.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }

            Socket client;
            try
            {
                client = await _socket.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (SocketException e) when (IsResourceExhaustion(e.SocketErrorCode) && !_stop.IsCancellationRequested)
            {
                // Out of descriptors or buffers: retrying at once would spin (and starve the runtime of the descriptors
                // it needs itself); the pending connections wait in the backlog until something is closed.
                _slots.Release();
                _open.Release();
                OnAcceptFailed(e, backoff);
                try
                {
                    await Task.Delay(backoff, _stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                backoff = backoff * 2 > MaxAcceptBackoff ? MaxAcceptBackoff : backoff * 2;
                continue;
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                _slots.Release();
                _open.Release();
                if (_stop.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            backoff = MinAcceptBackoff;
            _ = Task.Run(() => AdmitAsync(client));
        }
    }

    /// <summary>Whether an accept failed for want of a resource that frees up when connections close.</summary>
    internal static bool IsResourceExhaustion(SocketError error) =>
        error is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable;

    private void OnAcceptFailed(SocketException error, TimeSpan backoff)
    {
        Interlocked.Increment(ref _acceptFailures);
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref _lastFailureLog);
        if (last != long.MinValue && now - last < (long)AcceptFailureLogInterval.TotalMilliseconds)
        {
            Interlocked.Increment(ref _unloggedFailures);
            return;
        }

        Interlocked.Exchange(ref _lastFailureLog, now);
        LogAcceptFailed(_logger, LocalAddress, error.SocketErrorCode, Interlocked.Exchange(ref _unloggedFailures, 0), backoff.TotalMilliseconds, error);
    }

    [LoggerMessage(2002, LogLevel.Warning, "The listener on {Address} holds {Limit} open connections (MaxOpenConnections); further connections wait in the backlog until one closes")]
    private static partial void LogAtOpenLimit(ILogger logger, PeerAddress address, int limit);

    [LoggerMessage(2001, LogLevel.Warning, "Accepting on {Address} failed with {Error} (out of file descriptors or buffers); {Suppressed} more such failures since the last line; retrying in {BackoffMs} ms")]
    private static partial void LogAcceptFailed(ILogger logger, PeerAddress address, SocketError error, long suppressed, double backoffMs, Exception exception);

    private async Task AdmitAsync(Socket client)
    {
        PeerAddress remoteAddress;
        try
        {
            client.NoDelay = true;
            var remote = (IPEndPoint)client.RemoteEndPoint!;
            remoteAddress = PeerAddress.FromHostPort(LocalAddress.Scheme, remote.Address.ToString(), remote.Port);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Reset before we looked at it.
            _slots.Release();
            client.Dispose();
            _open.Release();
            return;
        }

        Stream stream = new NetworkStream(client, ownsSocket: false);
        try
        {
            if (_identity is not null)
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                timeout.CancelAfter(_options.HandshakeTimeout);
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = ssl;
                await ssl.AuthenticateAsServerAsync(
                    new SslServerAuthenticationOptions
                    {
                        ServerCertificate = _identity.Certificate,
                        EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
                        ClientCertificateRequired = false,
                    },
                    timeout.Token).ConfigureAwait(false);
            }

            var framed = new TcpFramedStream(client, stream, remoteAddress, _options.ReceiveBufferBytes, onClosed: _releaseOpen);
            if (!_ready.Writer.TryWrite(framed))
            {
                _slots.Release();
                await framed.DisposeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or AuthenticationException or SocketException or ObjectDisposedException)
        {
            // A client that fails its handshake is dropped; it sees the failure on its side.
            _slots.Release();
            await stream.DisposeAsync().ConfigureAwait(false);
            client.Dispose();
            _open.Release();
        }
    }
}
