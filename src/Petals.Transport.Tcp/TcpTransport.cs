using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;

namespace Petals.Transport.Tcp;

/// <summary>
/// The TCP transport: each stream is one TCP connection (Nagle off). Addresses are <c>tcp://host:port</c>, or
/// <c>tls://{peerId}@host:port</c> for TLS where the server's certificate key must hash to <c>peerId</c>: the
/// 64-hex-digit SHA-256 of its key, or the first 40 hex digits of it (its DHT node id; see <see cref="AuthenticatedPeer"/>
/// and <see cref="TlsPeerIdentity"/>). <c>tls://host:port</c> without an id only with
/// <see cref="TcpTransportOptions.AllowUnpinnedTls"/>. A TLS stream a client opened returns the key the server proved
/// as <see cref="AuthenticatedPeer"/> from <see cref="ITransportStream.GetService"/>. A small framing (data, end-of-writes, abort with a reason) carries
/// half-close and abort reasons through TLS too; an abort while a write is in progress, or a crash, reaches
/// the peer as <see cref="TransportErrorKind.ConnectionReset"/> without a reason.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class TcpTransport : ITransport
{
    /// <summary>The scheme of plain TCP addresses.</summary>
    public const string TcpScheme = "tcp";

    /// <summary>The scheme of TLS addresses.</summary>
    public const string TlsScheme = "tls";

    /// <summary>The host name clients ask for in TLS (the certificate is checked by its key, not its name).</summary>
    internal const string TlsTargetHost = "petals-peer";

    private readonly TcpTransportOptions _options;
    private readonly ILogger? _listenerLogger;

    /// <summary>Creates the transport.</summary>
    /// <param name="options">Settings; default <see cref="TcpTransportOptions"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">A timeout or the pending-stream limit is not positive, or the receive buffer is below 64 KiB.</exception>
    public TcpTransport(TcpTransportOptions? options = null)
        : this(options, loggerFactory: null)
    {
    }

    /// <summary>Creates the transport, logging listener trouble (accepts failing for want of file descriptors, rate-limited) to <paramref name="loggerFactory"/>.</summary>
    /// <param name="options">Settings; default <see cref="TcpTransportOptions"/>.</param>
    /// <param name="loggerFactory">Where listeners log; none when null.</param>
    /// <exception cref="ArgumentOutOfRangeException">A timeout or the pending-stream limit is not positive, or the receive buffer is below 64 KiB.</exception>
    public TcpTransport(TcpTransportOptions? options, ILoggerFactory? loggerFactory)
    {
        _listenerLogger = loggerFactory?.CreateLogger("Petals.Transport.Tcp.TcpListener");
        _options = options ?? new TcpTransportOptions();
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(_options.ConnectTimeout, TimeSpan.Zero, "options.ConnectTimeout");
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(_options.HandshakeTimeout, TimeSpan.Zero, "options.HandshakeTimeout");
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.ReceiveBufferBytes, 64 * 1024, "options.ReceiveBufferBytes");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxPendingStreams, "options.MaxPendingStreams");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxOpenConnections, "options.MaxOpenConnections");
    }

    /// <inheritdoc/>
    public string Name => TcpScheme;

    /// <inheritdoc/>
    public async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        var tls = CheckScheme(address);
        if (tls && address.PeerId is null && !_options.AllowUnpinnedTls)
        {
            throw new ArgumentException(
                $"A TLS address needs the expected peer id: 'tls://{{peerId}}@host:port', not '{address}' (set TcpTransportOptions.AllowUnpinnedTls to accept any key there).",
                nameof(address));
        }

        cancellationToken.ThrowIfCancellationRequested();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ConnectTimeout);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            var endPoint = await ResolveAsync(address, timeout.Token).ConfigureAwait(false);
            await socket.ConnectAsync(endPoint, timeout.Token).ConfigureAwait(false);
            Stream stream = new NetworkStream(socket, ownsSocket: false);
            AuthenticatedPeer? proven = null;
            if (tls)
            {
                (stream, proven) = await AuthenticateAsClientAsync(stream, address, timeout.Token).ConfigureAwait(false);
            }

            return new TcpFramedStream(socket, stream, address, _options.ReceiveBufferBytes, proven);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw;
        }
        catch (OperationCanceledException e)
        {
            socket.Dispose();
            throw new TransportException(TransportErrorKind.Timeout, $"Connection to {address} timed out after {_options.ConnectTimeout}.", e);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            socket.Dispose();
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"Connection to {address} refused: nothing listens at {address.Location}.", e);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new TransportException(TransportErrorKind.ConnectionReset, $"Connection to {address} failed: {e.SocketErrorCode}: {e.Message}", e);
        }
        catch (IOException e)
        {
            socket.Dispose();
            throw new TransportException(TransportErrorKind.ConnectionReset, $"Connection to {address} failed during the TLS handshake: {e.Message}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public async ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default)
    {
        var tls = CheckScheme(bindAddress);
        if (tls && _options.Identity is null)
        {
            throw new InvalidOperationException($"Listening on {bindAddress} needs TcpTransportOptions.Identity (the certificate the server presents).");
        }

        var endPoint = await ResolveAsync(bindAddress, cancellationToken).ConfigureAwait(false);
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(endPoint);
            socket.Listen(512);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new TransportException(TransportErrorKind.AddressUnavailable, $"Cannot listen at {bindAddress}: {e.SocketErrorCode}: {e.Message}", e);
        }

        var local = (IPEndPoint)socket.LocalEndPoint!;
        var localAddress = PeerAddress.FromHostPort(bindAddress.Scheme, local.Address.ToString(), local.Port, tls ? _options.Identity!.PeerId : null);
        return new TcpListenerImpl(socket, localAddress, tls ? _options.Identity : null, _options, _listenerLogger);
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        return serviceType.IsInstanceOfType(this) ? this : serviceType == typeof(TcpTransportOptions) ? _options : null;
    }

    private static bool CheckScheme(PeerAddress address) =>
        address.IsEmpty ? throw new ArgumentException("The address is empty.", nameof(address))
        : address.Scheme == TcpScheme ? false
        : address.Scheme == TlsScheme ? true
        : throw new ArgumentException($"The TCP transport handles 'tcp://host:port' and 'tls://peerId@host:port' addresses, not '{address}'.", nameof(address));

    private static async ValueTask<IPEndPoint> ResolveAsync(PeerAddress address, CancellationToken cancellationToken)
    {
        var host = address.Host;
        var port = address.Port;
        if (IPAddress.TryParse(host, out var ip))
        {
            return new IPEndPoint(ip, port);
        }

        try
        {
            var addresses = await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
            return addresses.Length > 0
                ? new IPEndPoint(addresses[0], port)
                : throw new TransportException(TransportErrorKind.ConnectionRefused, $"The host of {address} resolves to no address.");
        }
        catch (SocketException e)
        {
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"The host of {address} cannot be resolved: {e.Message}", e);
        }
    }

    private static async ValueTask<(Stream Stream, AuthenticatedPeer Peer)> AuthenticateAsClientAsync(Stream inner, PeerAddress address, CancellationToken cancellationToken)
    {
        AuthenticatedPeer? presented = null;
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = TlsTargetHost,
            EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
            RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            {
                // No certificate authority: the key is the identity. Without an expected id (AllowUnpinnedTls) any key
                // is accepted and reported; with one, the key must hash to it (full id or its 40-digit node-id prefix).
                presented = certificate is null ? null : new AuthenticatedPeer(TlsPeerIdentity.ComputePeerId(certificate));
                return presented is not null && (address.PeerId is null || presented.IsIdentifiedBy(address.PeerId));
            },
        };

        try
        {
            await ssl.AuthenticateAsClientAsync(options, cancellationToken).ConfigureAwait(false);
            return (ssl, presented!);
        }
        catch (AuthenticationException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            var what = presented is null ? "presented no usable certificate" : $"proved the identity {presented}";
            var expected = address.PeerId is null ? "a key" : $"the expected {address.PeerId}";
            throw new TransportException(TransportErrorKind.AuthenticationFailed, $"The peer at {address} {what}, not {expected}.", e);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
