using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Petals.Transport;

namespace Petals.Benchmarks.Soak;

/// <summary>
/// The TCP transport's framing (a 5-byte header: type, little-endian u32 length; data, end, abort frames) over a socket
/// this bench controls: bound to a chosen local address (a hostile peer on 127.0.0.2 is another host to the server), and
/// able to send arbitrary bytes after the protocol handshake (slowloris, partial messages).
/// </summary>
internal sealed class RawTcpTransport(IPAddress? localAddress) : ITransport
{
    public string Name => "tcp";

    public async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default) =>
        await RawTcpStream.ConnectAsync(address, localAddress, cancellationToken).ConfigureAwait(false);

    public ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("The soak's raw transport only connects.");

    public object? GetService(Type serviceType, object? serviceKey = null) => serviceType.IsInstanceOfType(this) ? this : null;
}

/// <summary>One framed TCP connection; reads and writes are not thread-safe (one reader, one writer at a time).</summary>
internal sealed class RawTcpStream : ITransportStream
{
    private const byte Data = 0;
    private const byte End = 1;
    private readonly Socket _socket;
    private readonly byte[] _header = new byte[5];
    private int _frameLeft;
    private bool _ended;

    private RawTcpStream(Socket socket, PeerAddress remote)
    {
        _socket = socket;
        RemoteAddress = remote;
    }

    public PeerAddress RemoteAddress { get; }

    /// <summary>Whether the server closed the connection (a read returned 0 or failed).</summary>
    public bool IsClosedByPeer { get; private set; }

    public static async Task<RawTcpStream> ConnectAsync(PeerAddress address, IPAddress? local, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (local is not null)
            {
                socket.Bind(new IPEndPoint(local, 0));
            }

            await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(address.Host), address.Port), cancellationToken).ConfigureAwait(false);
            return new RawTcpStream(socket, address);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_frameLeft == 0)
        {
            if (_ended || !await FillAsync(_header, cancellationToken).ConfigureAwait(false))
            {
                return 0;
            }

            var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(_header.AsSpan(1));
            if (_header[0] != Data)
            {
                _ended = true;
                IsClosedByPeer = true;
                return 0;
            }

            _frameLeft = length;
        }

        var read = await _socket.ReceiveAsync(buffer[..Math.Min(buffer.Length, _frameLeft)], SocketFlags.None, cancellationToken).ConfigureAwait(false);
        if (read == 0)
        {
            IsClosedByPeer = true;
            return 0;
        }

        _frameLeft -= read;
        return read;
    }

    /// <summary>Reads until the peer closes (or <paramref name="cancellationToken"/>), discarding what arrives.</summary>
    public async Task DrainAsync(CancellationToken cancellationToken)
    {
        var buffer = new byte[4096];
        try
        {
            while (await ReadAsync(buffer, cancellationToken).ConfigureAwait(false) > 0)
            {
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
        }

        IsClosedByPeer |= !cancellationToken.IsCancellationRequested;
    }

    public async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (!buffer.IsEmpty)
        {
            var part = Math.Min(buffer.Length, 1 << 20);
            await WriteFrameAsync(Data, buffer[..part], cancellationToken).ConfigureAwait(false);
            buffer = buffer[part..];
        }
    }

    public ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default) => WriteFrameAsync(End, ReadOnlyMemory<byte>.Empty, cancellationToken);

    public void Abort(string reason) => _socket.Dispose();

    public object? GetService(Type serviceType, object? serviceKey = null) => serviceType.IsInstanceOfType(this) ? this : null;

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }

    private async ValueTask WriteFrameAsync(byte type, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var header = new byte[5];
        header[0] = type;
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(1), (uint)payload.Length);
        await SendAllAsync(header, cancellationToken).ConfigureAwait(false);
        if (!payload.IsEmpty)
        {
            await SendAllAsync(payload, cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask SendAllAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        while (!bytes.IsEmpty)
        {
            var sent = await _socket.SendAsync(bytes, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            bytes = bytes[sent..];
        }
    }

    private async ValueTask<bool> FillAsync(Memory<byte> target, CancellationToken cancellationToken)
    {
        var filled = 0;
        while (filled < target.Length)
        {
            var read = await _socket.ReceiveAsync(target[filled..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                IsClosedByPeer = true;
                return false;
            }

            filled += read;
        }

        return true;
    }
}
