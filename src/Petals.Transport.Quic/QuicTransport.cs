using System.Net;
using System.Net.Quic;
using System.Net.Security;
using System.Runtime.Versioning;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Petals.Transport.Quic;

/// <summary>
/// The QUIC transport over System.Net.Quic with the ALPN <c>petals/1</c>. Addresses are
/// <c>quic://{peerId}@host:port</c>: QUIC always runs TLS 1.3, and the client accepts only a server whose
/// certificate's public key hashes (SHA-256 of the SubjectPublicKeyInfo, lower-case hex) to <c>peerId</c>.
/// Each stream is one QUIC connection with one bidirectional stream. QUIC aborts carry an error code, not a
/// reason: the peer sees <c>"aborted by peer (QUIC application error N)"</c>.
/// </summary>
/// <remarks>
/// Needs libmsquic (package <c>libmsquic</c>, file <c>libmsquic.so.2</c> on Linux). Where it is missing,
/// <see cref="QuicConnection.IsSupported"/> is false and the constructor throws
/// <see cref="PlatformNotSupportedException"/>; use the TCP transport there. Thread-safe.
/// </remarks>
[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("macos")]
public sealed class QuicTransport : ITransport
{
    /// <summary>The scheme of QUIC addresses.</summary>
    public const string Scheme = "quic";

    /// <summary>The application protocol negotiated on every connection.</summary>
    public static readonly SslApplicationProtocol Alpn = new("petals/1");

    internal const string TargetHost = "petals-peer";
    internal const long AbortErrorCode = 0x50;
    internal const long CloseErrorCode = 0;

    private readonly QuicTransportOptions _options;

    /// <summary>Creates the transport.</summary>
    /// <param name="options">Settings; default <see cref="QuicTransportOptions"/>.</param>
    /// <exception cref="PlatformNotSupportedException">QUIC is not available here (libmsquic missing); the message names the library.</exception>
    public QuicTransport(QuicTransportOptions? options = null)
    {
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException(UnsupportedMessage);
        }

        _options = options ?? new QuicTransportOptions();
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(_options.ConnectTimeout, TimeSpan.Zero, "options.ConnectTimeout");
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(_options.IdleTimeout, TimeSpan.Zero, "options.IdleTimeout");
    }

    /// <summary>Whether QUIC works on this machine (System.Net.Quic found libmsquic and it supports client and server).</summary>
    public static bool IsSupported => QuicConnection.IsSupported && QuicListener.IsSupported;

    /// <summary>Why QUIC is unavailable, naming the missing library.</summary>
    public static string UnsupportedMessage =>
        "QUIC is not supported on this machine: System.Net.Quic needs the native library libmsquic (libmsquic.so.2 on Linux, "
        + "from the 'libmsquic' package of packages.microsoft.com) with TLS 1.3 support, and it was not found. Use the TCP transport instead.";

    /// <inheritdoc/>
    public string Name => Scheme;

    /// <summary>The peer id a certificate stands for: lower-case hex SHA-256 of its SubjectPublicKeyInfo.</summary>
    /// <param name="certificate">Any certificate.</param>
    /// <returns>64 lower-case hex digits.</returns>
    public static string ComputePeerId(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return Convert.ToHexStringLower(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));
    }

    /// <inheritdoc/>
    public async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        CheckScheme(address);
        if (address.PeerId is null)
        {
            throw new ArgumentException($"A QUIC address needs the expected peer id: 'quic://{{peerId}}@host:port', not '{address}'.", nameof(address));
        }

        cancellationToken.ThrowIfCancellationRequested();
        var endPoint = await ResolveAsync(address, cancellationToken).ConfigureAwait(false);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ConnectTimeout);
        string? presented = null;
        var options = new QuicClientConnectionOptions
        {
            RemoteEndPoint = endPoint,
            DefaultStreamErrorCode = AbortErrorCode,
            DefaultCloseErrorCode = CloseErrorCode,
            IdleTimeout = _options.IdleTimeout,
            ClientAuthenticationOptions = new SslClientAuthenticationOptions
            {
                ApplicationProtocols = [Alpn],
                TargetHost = TargetHost,
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    presented = certificate is X509Certificate2 c ? ComputePeerId(c) : null;
                    return presented is not null && string.Equals(presented, address.PeerId, StringComparison.OrdinalIgnoreCase);
                },
            },
        };

        QuicConnection? connection = null;
        try
        {
            connection = await QuicConnection.ConnectAsync(options, timeout.Token).ConfigureAwait(false);
            var stream = await connection.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, timeout.Token).ConfigureAwait(false);

            // QUIC announces a stream to the peer only with its first byte: send an empty preamble.
            await stream.WriteAsync(new byte[] { QuicTransportStream.Preamble }, timeout.Token).ConfigureAwait(false);
            return new QuicTransportStream(connection, stream, address);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await DisposeQuietlyAsync(connection).ConfigureAwait(false);
            throw;
        }
        catch (OperationCanceledException e)
        {
            await DisposeQuietlyAsync(connection).ConfigureAwait(false);
            throw new TransportException(TransportErrorKind.Timeout, $"Connection to {address} timed out after {_options.ConnectTimeout}.", e);
        }
        catch (System.Security.Authentication.AuthenticationException e)
        {
            await DisposeQuietlyAsync(connection).ConfigureAwait(false);
            var what = presented is null ? "presented no usable certificate" : $"proved the identity {presented}";
            throw new TransportException(TransportErrorKind.AuthenticationFailed, $"The peer at {address} {what}, not the expected {address.PeerId}.", e);
        }
        catch (QuicException e) when (e.QuicError == QuicError.ConnectionRefused)
        {
            await DisposeQuietlyAsync(connection).ConfigureAwait(false);
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"Connection to {address} refused: nothing listens at {address.Location}.", e);
        }
        catch (System.Net.Sockets.SocketException e) when (e.SocketErrorCode is System.Net.Sockets.SocketError.ConnectionRefused or System.Net.Sockets.SocketError.HostUnreachable or System.Net.Sockets.SocketError.NetworkUnreachable)
        {
            // msquic reports an ICMP "port unreachable" this way.
            await DisposeQuietlyAsync(connection).ConfigureAwait(false);
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"Connection to {address} refused: {e.SocketErrorCode} at {address.Location}.", e);
        }
        catch (QuicException e) when (e.QuicError == QuicError.ConnectionTimeout)
        {
            await DisposeQuietlyAsync(connection).ConfigureAwait(false);
            throw new TransportException(TransportErrorKind.Timeout, $"Connection to {address} timed out: no QUIC answer from {address.Location}.", e);
        }
        catch (QuicException e)
        {
            await DisposeQuietlyAsync(connection).ConfigureAwait(false);
            throw new TransportException(TransportErrorKind.ConnectionReset, $"Connection to {address} failed: {e.QuicError}: {e.Message}", e);
        }
    }

    /// <inheritdoc/>
    public async ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default)
    {
        CheckScheme(bindAddress);
        var certificate = _options.ServerCertificate
            ?? throw new InvalidOperationException($"Listening on {bindAddress} needs QuicTransportOptions.ServerCertificate.");
        var endPoint = await ResolveAsync(bindAddress, cancellationToken).ConfigureAwait(false);
        var serverOptions = new QuicServerConnectionOptions
        {
            DefaultStreamErrorCode = AbortErrorCode,
            DefaultCloseErrorCode = CloseErrorCode,
            IdleTimeout = _options.IdleTimeout,
            MaxInboundBidirectionalStreams = 1,
            ServerAuthenticationOptions = new SslServerAuthenticationOptions
            {
                ApplicationProtocols = [Alpn],
                ServerCertificate = certificate,
            },
        };

        QuicListener listener;
        try
        {
            listener = await QuicListener.ListenAsync(
                new QuicListenerOptions
                {
                    ListenEndPoint = endPoint,
                    ApplicationProtocols = [Alpn],
                    ConnectionOptionsCallback = (_, _, _) => ValueTask.FromResult(serverOptions),
                },
                cancellationToken).ConfigureAwait(false);
        }
        catch (QuicException e)
        {
            throw new TransportException(TransportErrorKind.AddressUnavailable, $"Cannot listen at {bindAddress}: {e.QuicError}: {e.Message}", e);
        }

        var local = listener.LocalEndPoint;
        var localAddress = PeerAddress.FromHostPort(Scheme, local.Address.ToString(), local.Port, ComputePeerId(certificate));
        return new QuicTransportListener(listener, localAddress);
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        return serviceType.IsInstanceOfType(this) ? this : serviceType == typeof(QuicTransportOptions) ? _options : null;
    }

    private static void CheckScheme(PeerAddress address)
    {
        if (address.IsEmpty || address.Scheme != Scheme)
        {
            throw new ArgumentException($"The QUIC transport handles 'quic://peerId@host:port' addresses, not '{address}'.", nameof(address));
        }
    }

    private static async ValueTask<IPEndPoint> ResolveAsync(PeerAddress address, CancellationToken cancellationToken)
    {
        if (IPAddress.TryParse(address.Host, out var ip))
        {
            return new IPEndPoint(ip, address.Port);
        }

        var addresses = await Dns.GetHostAddressesAsync(address.Host, cancellationToken).ConfigureAwait(false);
        return addresses.Length > 0
            ? new IPEndPoint(addresses[0], address.Port)
            : throw new TransportException(TransportErrorKind.ConnectionRefused, $"The host of {address} resolves to no address.");
    }

    private static async ValueTask DisposeQuietlyAsync(QuicConnection? connection)
    {
        if (connection is not null)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }
}
