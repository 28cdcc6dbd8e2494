using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Threading.Channels;

namespace Petals.Transport.Tcp;

/// <summary>
/// Accepts TCP connections in the background, runs TLS handshakes off the accept path, queues ready streams. At most
/// <see cref="TcpTransportOptions.MaxPendingStreams"/> connections are taken from the kernel and not yet accepted by
/// the caller (in a handshake or queued); beyond that the loop stops accepting and the kernel backlog applies, so
/// peers cannot make the listener buffer without bound.
/// </summary>
internal sealed class TcpListenerImpl : ITransportListener
{
    private readonly Socket _socket;
    private readonly TlsPeerIdentity? _identity;
    private readonly TcpTransportOptions _options;
    private readonly Channel<TcpFramedStream> _ready = Channel.CreateUnbounded<TcpFramedStream>();
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _slots;
    private readonly Task _acceptLoop;
    private int _disposed;

    public TcpListenerImpl(Socket socket, PeerAddress localAddress, TlsPeerIdentity? identity, TcpTransportOptions options)
    {
        _socket = socket;
        LocalAddress = localAddress;
        _identity = identity;
        _options = options;
        _slots = new SemaphoreSlim(options.MaxPendingStreams, options.MaxPendingStreams);
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public PeerAddress LocalAddress { get; }

    /// <summary>Streams admitted and waiting for <see cref="AcceptAsync"/> (for tests).</summary>
    internal int QueuedStreams => _ready.Reader.Count;

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
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                // A slot per connection taken from the kernel, given back when the caller accepts it or it is dropped.
                await _slots.WaitAsync(_stop.Token).ConfigureAwait(false);
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
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                _slots.Release();
                if (_stop.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            client.NoDelay = true;
            _ = Task.Run(() => AdmitAsync(client));
        }
    }

    private async Task AdmitAsync(Socket client)
    {
        var remote = (IPEndPoint)client.RemoteEndPoint!;
        var remoteAddress = PeerAddress.FromHostPort(LocalAddress.Scheme, remote.Address.ToString(), remote.Port);
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

            var framed = new TcpFramedStream(client, stream, remoteAddress, _options.ReceiveBufferBytes);
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
        }
    }
}
