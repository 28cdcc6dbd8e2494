using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Transport.Tcp.Tests;

/// <summary>TCP-specific behaviour: TLS identity checks, framing violations, address handling.</summary>
public sealed class TcpTransportTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Tls_listener_advertises_its_peer_id_and_clients_accept_only_that_key()
    {
        using var identity = TlsPeerIdentity.Create();
        using var impostor = TlsPeerIdentity.Create();
        Assert.Equal(64, identity.PeerId.Length);
        Assert.NotEqual(identity.PeerId, impostor.PeerId);
        Assert.Equal(identity.PeerId, TlsPeerIdentity.ComputePeerId(identity.Certificate));

        var server = new TcpTransport(new TcpTransportOptions { Identity = identity });
        await using var listener = await server.ListenAsync(PeerAddress.Parse("tls://127.0.0.1:0"), Ct);
        Assert.Equal(identity.PeerId, listener.LocalAddress.PeerId);

        var client = new TcpTransport();
        var wrong = listener.LocalAddress.WithPeerId(impostor.PeerId);
        var error = await Assert.ThrowsAsync<TransportException>(async () => await client.ConnectAsync(wrong, Ct));
        Assert.Equal(TransportErrorKind.AuthenticationFailed, error.Kind);
        Assert.Contains(identity.PeerId, error.Message, StringComparison.Ordinal);
        Assert.Contains(impostor.PeerId, error.Message, StringComparison.Ordinal);

        await using var ok = await client.ConnectAsync(listener.LocalAddress, Ct);
        await ok.WriteAsync("hello over tls"u8.ToArray(), Ct);

        // With TLS 1.3 the server finishes its handshake before the client judges the certificate, so the
        // refused client may still show up as an accepted stream that then resets: skip it.
        var buffer = new byte[64];
        for (var attempt = 0; ; attempt++)
        {
            await using var accepted = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
            try
            {
                var n = await accepted.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct);
                Assert.Equal("hello over tls", Encoding.UTF8.GetString(buffer, 0, n));
                break;
            }
            catch (TransportException e) when (attempt == 0 && e.Kind == TransportErrorKind.ConnectionReset)
            {
                // The refused client's connection.
            }
        }
    }

    [Fact]
    public async Task Tls_needs_an_identity_to_listen_and_a_peer_id_to_connect()
    {
        var transport = new TcpTransport();
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await transport.ListenAsync(PeerAddress.Parse("tls://127.0.0.1:0"), Ct));
        var error = await Assert.ThrowsAsync<ArgumentException>(async () => await transport.ConnectAsync(PeerAddress.Parse("tls://127.0.0.1:1"), Ct));
        Assert.Contains("peer id", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(async () => await transport.ConnectAsync(PeerAddress.Parse("mem://x"), Ct));
    }

    [Fact]
    public async Task A_peer_breaking_the_framing_is_reported_as_a_protocol_violation()
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(new IPEndPoint(IPAddress.Loopback, listener.LocalAddress.Port), Ct);
        await using var accepted = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);

        var frame = new byte[5];
        frame[0] = TcpFramedStream.DataFrame;
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(1), TcpFramedStream.MaxDataFrame + 1);
        await raw.SendAsync(frame, SocketFlags.None, Ct);

        var error = await Assert.ThrowsAsync<TransportException>(async () => await accepted.ReadAsync(new byte[8], Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.ProtocolViolation, error.Kind);
        Assert.Contains("invalid frame", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_peer_that_vanishes_without_ending_is_a_connection_reset()
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(new IPEndPoint(IPAddress.Loopback, listener.LocalAddress.Port), Ct);
        await using var accepted = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        raw.Dispose();

        var error = await Assert.ThrowsAsync<TransportException>(async () => await accepted.ReadAsync(new byte[8], Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.ConnectionReset, error.Kind);
    }

    [Fact]
    public async Task Long_abort_reasons_are_truncated_not_rejected()
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        await using var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        client.Abort(new string('x', 5000));
        var error = await Assert.ThrowsAsync<TransportException>(async () => await server.ReadAsync(new byte[8], Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Contains("aborted by peer: " + new string('x', TcpFramedStream.MaxReasonBytes), error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(new string('x', TcpFramedStream.MaxReasonBytes + 1), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Listening_on_a_taken_port_names_the_address()
    {
        var transport = new TcpTransport();
        await using var first = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        var error = await Assert.ThrowsAsync<TransportException>(async () => await transport.ListenAsync(first.LocalAddress, Ct));
        Assert.Equal(TransportErrorKind.AddressUnavailable, error.Kind);
        Assert.Contains(first.LocalAddress.ToString(), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Accepted_streams_expose_the_socket_with_nagle_off()
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        await using var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.True(((Socket)client.GetService(typeof(Socket))!).NoDelay);
        Assert.True(((Socket)server.GetService(typeof(Socket))!).NoDelay);
        Assert.Equal("tcp", server.RemoteAddress.Scheme);
        Assert.Equal("127.0.0.1", server.RemoteAddress.Host);
    }
    [Fact]
    public async Task An_unanswered_tls_handshake_times_out_as_a_transport_timeout()
    {
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        silent.Listen(8); // the kernel completes TCP handshakes; nobody ever answers the TLS hello
        var port = ((IPEndPoint)silent.LocalEndPoint!).Port;
        var transport = new TcpTransport(new TcpTransportOptions { ConnectTimeout = TimeSpan.FromMilliseconds(300) });
        var address = PeerAddress.FromHostPort("tls", "127.0.0.1", port, new string('a', 64));

        var error = await Assert.ThrowsAsync<TransportException>(async () => await transport.ConnectAsync(address, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.Timeout, error.Kind);
        Assert.Contains(address.ToString(), error.Message, StringComparison.Ordinal);

        // The caller's own cancellation stays a cancellation.
        var patient = new TcpTransport(new TcpTransportOptions { ConnectTimeout = TimeSpan.FromMinutes(1) });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(200);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await patient.ConnectAsync(address, cts.Token).AsTask().WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task A_client_that_never_finishes_the_tls_handshake_is_dropped_without_blocking_accepts()
    {
        using var identity = TlsPeerIdentity.Create();
        var server = new TcpTransport(new TcpTransportOptions { Identity = identity, HandshakeTimeout = TimeSpan.FromSeconds(2) });
        await using var listener = await server.ListenAsync(PeerAddress.Parse("tls://127.0.0.1:0"), Ct);
        using var mute = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await mute.ConnectAsync(new IPEndPoint(IPAddress.Loopback, listener.LocalAddress.Port), Ct);

        // A proper client is served while the mute one waits.
        await using var client = await new TcpTransport().ConnectAsync(listener.LocalAddress, Ct);
        await using var accepted = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await client.WriteAsync(new byte[] { 42 }, Ct);
        var one = new byte[1];
        Assert.Equal(1, await accepted.ReadAsync(one, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(42, one[0]);

        // The mute client is disconnected after the handshake timeout.
        var received = await mute.ReceiveAsync(new byte[16], SocketFlags.None, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(0, received);
    }

    [Fact]
    public async Task Abort_during_a_blocked_write_resets_the_connection()
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        await using var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);

        // Nobody reads on the server, so this write fills the buffers and blocks mid-frame.
        var write = client.WriteAsync(new byte[64 << 20], Ct).AsTask();
        await Task.Delay(200, Ct);
        Assert.False(write.IsCompleted);
        client.Abort("gave up mid-write");
        var local = await Assert.ThrowsAsync<TransportException>(() => write.WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.Aborted, local.Kind);
        Assert.Contains("aborted locally: gave up mid-write", local.Message, StringComparison.Ordinal);

        var peer = await Assert.ThrowsAsync<TransportException>(async () =>
        {
            var buffer = new byte[1 << 20];
            while (await server.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct) > 0)
            {
            }
        });
        Assert.Equal(TransportErrorKind.ConnectionReset, peer.Kind);
    }

    [Fact]
    public async Task Unaccepted_connections_are_bounded_and_admitted_as_the_caller_accepts()
    {
        var transport = new TcpTransport(new TcpTransportOptions { MaxPendingStreams = 2 });
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        var queue = (TcpListenerImpl)listener;
        var clients = new List<ITransportStream>();
        try
        {
            // Five peers connect (the kernel completes TCP handshakes) and each sends a frame nobody has accepted yet.
            for (var i = 0; i < 5; i++)
            {
                var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
                clients.Add(client);
                await client.WriteAsync(new[] { (byte)i }, Ct);
            }

            // The listener takes only two of them from the kernel: waits for both, then watches that no third arrives.
            var deadline = DateTime.UtcNow + Bound;
            while (queue.QueuedStreams < 2 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(10, Ct);
            }

            for (var i = 0; i < 50; i++)
            {
                Assert.True(queue.QueuedStreams <= 2, $"{queue.QueuedStreams} unaccepted streams are queued; the limit is 2");
                await Task.Delay(10, Ct);
            }

            Assert.Equal(2, queue.QueuedStreams);

            // Accepting frees slots: every peer is served in turn, with its own bytes.
            var seen = new List<int>();
            for (var i = 0; i < 5; i++)
            {
                await using var accepted = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
                var one = new byte[1];
                Assert.Equal(1, await accepted.ReadAsync(one, Ct).AsTask().WaitAsync(Bound, Ct));
                seen.Add(one[0]);
                Assert.True(queue.QueuedStreams <= 2, $"{queue.QueuedStreams} unaccepted streams are queued; the limit is 2");
                await accepted.CompleteWritesAsync(Ct);
            }

            seen.Sort();
            Assert.Equal([0, 1, 2, 3, 4], seen);
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Fact]
    public void The_pending_stream_limit_must_be_positive()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TcpTransport(new TcpTransportOptions { MaxPendingStreams = 0 }));
    }
}
