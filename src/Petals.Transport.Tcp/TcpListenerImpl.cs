using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Threading.Channels;

namespace Petals.Transport.Tcp;

/// <summary>Accepts TCP connections in the background, runs TLS handshakes off the accept path, queues ready streams.</summary>
internal sealed class TcpListenerImpl : ITransportListener
{
    private readonly Socket _socket;
    private readonly TlsPeerIdentity? _identity;
    private readonly TcpTransportOptions _options;
    private readonly Channel<TcpFramedStream> _ready = Channel.CreateUnbounded<TcpFramedStream>();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private int _disposed;

    public TcpListenerImpl(Socket socket, PeerAddress localAddress, TlsPeerIdentity? identity, TcpTransportOptions options)
    {
        _socket = socket;
        LocalAddress = localAddress;
        _identity = identity;
        _options = options;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public PeerAddress LocalAddress { get; }

    public async ValueTask<ITransportStream> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _ready.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
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
            Socket client;
            try
            {
                client = await _socket.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
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
                await framed.DisposeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or AuthenticationException or SocketException or ObjectDisposedException)
        {
            // A client that fails its handshake is dropped; it sees the failure on its side.
            await stream.DisposeAsync().ConfigureAwait(false);
            client.Dispose();
        }
    }
}
