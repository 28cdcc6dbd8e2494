using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Channels;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Benchmarks.Mux;

/// <summary>
/// TLS 1.3 over any transport (for the mux benchmark): an <see cref="SslStream"/> over each inner stream, so that the
/// network shaper below it delays the handshake's messages as a real network would (TcpTransport's TLS sits on a
/// socket, which the in-process shaper cannot reach). The server proves <paramref name="identity"/>'s certificate; the
/// client pins it when the address names a peer id (as TcpTransport does), and accepts any otherwise. Handshakes of
/// accepted streams run concurrently. Abort reasons travel in the inner transport (in clear: this is a benchmark).
/// </summary>
internal sealed class BenchTlsTransport(ITransport inner, TlsPeerIdentity identity) : DelegatingTransport(inner)
{
    public override string Name => "tls(" + InnerTransport.Name + ")";

    public override async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        var stream = await InnerTransport.ConnectAsync(address, cancellationToken).ConfigureAwait(false);
        var ssl = new SslStream(stream.AsStream(leaveOpen: true), leaveInnerStreamOpen: true);
        try
        {
            await ssl.AuthenticateAsClientAsync(
                new SslClientAuthenticationOptions
                {
                    TargetHost = "petals-peer",
                    EnabledSslProtocols = SslProtocols.Tls13,
                    RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                        certificate is not null && (address.PeerId is null || TlsPeerIdentity.ComputePeerId(certificate) == address.PeerId),
                },
                cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            stream.Abort("TLS handshake failed");
            await stream.DisposeAsync().ConfigureAwait(false);
            throw new TransportException(TransportErrorKind.AuthenticationFailed, $"TLS with {address} failed: {e.Message}", e);
        }

        return new TlsStream(ssl, stream);
    }

    public override async ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default)
    {
        var listener = await InnerTransport.ListenAsync(bindAddress, cancellationToken).ConfigureAwait(false);
        return new TlsListener(listener, identity.Certificate);
    }

    private sealed class TlsListener : ITransportListener
    {
        private readonly ITransportListener _inner;
        private readonly X509Certificate2 _certificate;
        private readonly Channel<ITransportStream> _ready = Channel.CreateUnbounded<ITransportStream>();
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;

        public TlsListener(ITransportListener inner, X509Certificate2 certificate)
        {
            _inner = inner;
            _certificate = certificate;
            _loop = Task.Run(AcceptLoopAsync);
        }

        public PeerAddress LocalAddress => _inner.LocalAddress;

        public async ValueTask<ITransportStream> AcceptAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                return await _ready.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (ChannelClosedException)
            {
                throw new ObjectDisposedException(nameof(TlsListener));
            }
        }

        public async ValueTask DisposeAsync()
        {
            _ready.Writer.TryComplete();
            await _stop.CancelAsync().ConfigureAwait(false);
            await _inner.DisposeAsync().ConfigureAwait(false);
            await _loop.ConfigureAwait(false);

            // _stop is not disposed: handshakes still in flight may read its token.
        }

        private async Task AcceptLoopAsync()
        {
            while (true)
            {
                ITransportStream stream;
                try
                {
                    stream = await _inner.AcceptAsync(_stop.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
                {
                    return;
                }

                _ = Task.Run(async () =>
                {
                    var ssl = new SslStream(stream.AsStream(leaveOpen: true), leaveInnerStreamOpen: true);
                    try
                    {
                        await ssl.AuthenticateAsServerAsync(
                            new SslServerAuthenticationOptions { ServerCertificate = _certificate, EnabledSslProtocols = SslProtocols.Tls13 },
                            _stop.Token).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException or TransportException)
                    {
                        await ssl.DisposeAsync().ConfigureAwait(false);
                        stream.Abort("TLS handshake failed");
                        await stream.DisposeAsync().ConfigureAwait(false);
                        return;
                    }

                    if (!_ready.Writer.TryWrite(new TlsStream(ssl, stream)))
                    {
                        stream.Abort("the listener closed");
                        await stream.DisposeAsync().ConfigureAwait(false);
                    }
                });
            }
        }
    }

    /// <summary>A transport stream over TLS: data through the <see cref="SslStream"/>, half-close and abort through the inner stream.</summary>
    private sealed class TlsStream(SslStream ssl, ITransportStream inner) : ITransportStream
    {
        private volatile bool _writesCompleted;

        public PeerAddress RemoteAddress => inner.RemoteAddress;

        public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            try
            {
                return await ssl.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw Map(e);
            }
        }

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_writesCompleted)
            {
                throw new InvalidOperationException("Writes were completed.");
            }

            try
            {
                await ssl.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw Map(e);
            }
        }

        public async ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default)
        {
            if (_writesCompleted)
            {
                return;
            }

            _writesCompleted = true;
            await inner.CompleteWritesAsync(cancellationToken).ConfigureAwait(false);
        }

        public void Abort(string reason) => inner.Abort(reason);

        public async ValueTask DisposeAsync()
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            await inner.DisposeAsync().ConfigureAwait(false);
        }

        public object? GetService(Type serviceType, object? serviceKey = null) =>
            serviceKey is null && serviceType.IsInstanceOfType(this) ? this : serviceType == typeof(SslStream) ? ssl : inner.GetService(serviceType, serviceKey);

        private TransportException Map(IOException e) =>
            e.InnerException as TransportException ?? e.InnerException?.InnerException as TransportException
            ?? new TransportException(TransportErrorKind.ConnectionReset, $"TLS stream with {RemoteAddress} broke: {e.Message}", e);
    }
}

/// <summary>Adds one round trip before each connect returns: the TCP handshake that the in-memory transport does not have.</summary>
internal sealed class ConnectRoundTripTransport(ITransport inner, Func<TimeSpan> roundTrip) : DelegatingTransport(inner)
{
    public override async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        var delay = roundTrip();
        if (delay > TimeSpan.Zero)
        {
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        }

        return await InnerTransport.ConnectAsync(address, cancellationToken).ConfigureAwait(false);
    }
}
