using System.Net.Quic;
using System.Runtime.Versioning;
using System.Threading.Channels;

namespace Petals.Transport.Quic;

/// <summary>Accepts QUIC connections in the background and queues the first bidirectional stream of each.</summary>
[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("macos")]
internal sealed class QuicTransportListener : ITransportListener
{
    private static readonly TimeSpan StreamOpenTimeout = TimeSpan.FromSeconds(10);

    private readonly QuicListener _listener;
    private readonly Channel<QuicTransportStream> _ready = Channel.CreateUnbounded<QuicTransportStream>();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private int _disposed;

    public QuicTransportListener(QuicListener listener, PeerAddress localAddress)
    {
        _listener = listener;
        LocalAddress = localAddress;
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
        await _listener.DisposeAsync().ConfigureAwait(false);
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
            QuicConnection connection;
            try
            {
                connection = await _listener.AcceptConnectionAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or QuicException or System.Security.Authentication.AuthenticationException)
            {
                if (_stop.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            _ = Task.Run(() => AdmitAsync(connection));
        }
    }

    private async Task AdmitAsync(QuicConnection connection)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(StreamOpenTimeout);
            var stream = await connection.AcceptInboundStreamAsync(timeout.Token).ConfigureAwait(false);
            var preamble = new byte[1];
            var n = await stream.ReadAsync(preamble, timeout.Token).ConfigureAwait(false);
            if (n != 1 || preamble[0] != QuicTransportStream.Preamble)
            {
                throw new InvalidDataException("the client did not open its stream with the preamble");
            }

            var remote = connection.RemoteEndPoint;
            var framed = new QuicTransportStream(connection, stream, PeerAddress.FromHostPort(QuicTransport.Scheme, remote.Address.ToString(), remote.Port));
            if (!_ready.Writer.TryWrite(framed))
            {
                await framed.DisposeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or QuicException or InvalidDataException or ObjectDisposedException)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }
}
