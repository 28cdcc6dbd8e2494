using System.Buffers.Binary;
using System.IO.Pipelines;
using Petals.Protocol;
using Petals.Server;
using Petals.Testing.Time;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Tests.Server;

/// <summary>
/// The connection-level limits of a block server: total and per-address connection limits, the handshake deadline, the
/// idle deadline of connections without a session, the minimum receive rate of a message in progress, and the
/// reassembly budget over all connections. Each limit is small here; each refusal is counted and precise, and the
/// sessions of other connections go on.
/// </summary>
public sealed class BoundedServerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task OverTheTotalLimitANewConnectionIsRefusedWithConnectionLimitWhileAnOpenSessionGoesOn()
    {
        await using var h = await ServerHarness.StartAsync(o => o.MaxConnections = 2);
        await using var withSession = await h.ConnectAsync();
        var session = await BlockServerTests.Session.OpenAsync(withSession, h, maxLength: 16);
        await session.StepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);
        await using var second = await h.ConnectAsync();

        await using var third = await h.ConnectAsync();
        var refused = await Assert.ThrowsAsync<ProtocolException>(() => third.Run.WaitAsync(ServerHarness.Bound, Ct));
        Assert.Equal(ProtocolErrorCode.ConnectionLimit, refused.Code);
        Assert.Contains("limit of 2 connections", refused.Message, StringComparison.Ordinal);

        var stats = h.Server.GetStatistics();
        Assert.Equal(1, stats.ConnectionsRefused);
        Assert.Equal(0, stats.ConnectionsRefusedPerAddress);
        Assert.Equal(2, stats.OpenConnections);
        Assert.Equal(3, (await session.StepAsync(2, 2, h.Input(1, 1, seed: 2), 1, 1)).Position);

        // A slot frees when a connection ends.
        await second.DisposeAsync();
        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().OpenConnections == 1, "the second connection was released");
        await using var fourth = await h.ConnectAsync();
        Assert.IsType<InfoResponse>((await fourth.CallAsync(InfoRequest.Instance)).Message);
    }

    [Fact]
    public async Task OverThePerAddressLimitANewConnectionFromTheSameAddressIsRefusedAndCounted()
    {
        await using var h = await ServerHarness.StartAsync(o => o.MaxConnectionsPerAddress = 2, new TcpTransport());
        await using var first = await h.ConnectAsync();
        await using var second = await h.ConnectAsync();
        await using var third = await h.ConnectAsync();
        var refused = await Assert.ThrowsAsync<ProtocolException>(() => third.Run.WaitAsync(ServerHarness.Bound, Ct));
        Assert.Equal(ProtocolErrorCode.ConnectionLimit, refused.Code);
        Assert.Contains("limit of 2 connections from 127.0.0.1", refused.Message, StringComparison.Ordinal);
        var stats = h.Server.GetStatistics();
        Assert.Equal(1, stats.ConnectionsRefused);
        Assert.Equal(1, stats.ConnectionsRefusedPerAddress);
        Assert.IsType<InfoResponse>((await first.CallAsync(InfoRequest.Instance)).Message);
        Assert.IsType<InfoResponse>((await second.CallAsync(InfoRequest.Instance)).Message);
    }

    [Fact]
    public async Task AConnectionThatSendsNoPreambleIsClosedAtTheHandshakeTimeout()
    {
        var time = new ManualTimeProvider();
        await using var h = await ServerHarness.StartAsync(o =>
        {
            o.TimeProvider = time;
            o.HandshakeTimeout = TimeSpan.FromSeconds(5);
        });
        await using var silent = await h.Transport.ConnectAsync(h.Address, Ct);
        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().OpenConnections == 1, "the server took the connection");

        // The deadline is armed when the handshake starts (at or after this instant): advance a second at a time.
        var advanced = TimeSpan.Zero;
        while (h.Server.GetStatistics().OpenConnections != 0)
        {
            Assert.True(advanced < TimeSpan.FromSeconds(30), "the silent connection was never closed");
            time.Advance(TimeSpan.FromSeconds(1));
            advanced += TimeSpan.FromSeconds(1);
            await Task.Delay(20, Ct);
        }

        Assert.True(advanced >= TimeSpan.FromSeconds(5), $"closed after {advanced}, before the handshake timeout");
        Assert.Equal(1, h.Server.GetStatistics().HandshakeTimeouts);
        await ReadToEndAsync(silent);
    }

    [Fact]
    public async Task AnIdleConnectionWithoutASessionIsClosedWithConnectionIdleAndOneWithASessionIsNot()
    {
        var time = new ManualTimeProvider();
        await using var h = await ServerHarness.StartAsync(o =>
        {
            o.TimeProvider = time;
            o.ConnectionIdleTimeout = TimeSpan.FromSeconds(5);
            o.SessionIdleTimeout = TimeSpan.FromSeconds(60);
        });
        await using var idle = await h.ConnectAsync();
        await using var busy = await h.ConnectAsync();
        var session = await BlockServerTests.Session.OpenAsync(busy, h, maxLength: 16);
        await session.StepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);

        for (var i = 0; i < 4; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.False(idle.Run.IsCompleted, "closed before its idle timeout");
        for (var i = 0; i < 4; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
        }

        var closed = await Assert.ThrowsAsync<ProtocolException>(() => idle.Run.WaitAsync(ServerHarness.Bound, Ct));
        Assert.Equal(ProtocolErrorCode.ConnectionIdle, closed.Code);
        Assert.Contains("no session and received nothing for 5 s", closed.Message, StringComparison.Ordinal);
        Assert.Equal(1, h.Server.GetStatistics().IdleConnectionsClosed);
        Assert.Equal(3, (await session.StepAsync(2, 2, h.Input(1, 1, seed: 2), 1, 1)).Position);
        Assert.False(busy.Run.IsCompleted);
    }

    [Fact]
    public async Task AMessageArrivingBelowTheMinimumRateIsDroppedWithReceiveTooSlowAndAFastOneIsNot()
    {
        var time = new ManualTimeProvider();
        await using var h = await ServerHarness.StartAsync(o =>
        {
            o.TimeProvider = time;
            o.MinReceiveRate = 100;
            o.MinReceiveRateWindow = TimeSpan.FromSeconds(10);
            o.ConnectionIdleTimeout = TimeSpan.FromHours(1);
        });

        // A frame of 5000 bytes of which 10 arrive, then nothing: 10 bytes in 10 s is below 100 bytes/s.
        await using var slow = await h.Transport.ConnectAsync(h.Address, Ct);
        await slow.WriteAsync(Preamble(), Ct);
        await slow.WriteAsync(Header(5000, FrameType.ForwardRequest, FrameFlags.None, 1), Ct);
        await slow.WriteAsync(new byte[10], Ct);
        long written = Preamble().Length + FrameHeader.Size + 10;
        await ServerHarness.WaitUntil(() => h.Server.MessagesInProgress == 1, "the server saw the start of the frame");

        // A client that keeps to the rate: 2,000 bytes of a chunked message every 5 s.
        await using var fast = await h.Transport.ConnectAsync(h.Address, Ct);
        await fast.WriteAsync(Preamble(), Ct);
        var total = 12_000;
        var first = new byte[4 + 1996];
        BinaryPrimitives.WriteUInt32LittleEndian(first, (uint)total);
        await fast.WriteAsync(Header(first.Length, FrameType.ForwardRequest, FrameFlags.More, 1), Ct);
        await fast.WriteAsync(first, Ct);
        written += Preamble().Length + FrameHeader.Size + first.Length;
        await ServerHarness.WaitUntil(() => h.Server.MessagesInProgress == 2, "the server saw the start of the chunked message");

        var sent = 1996;
        for (var second = 1; second <= 25; second++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            if (second % 5 == 0 && sent + 2000 < total)
            {
                await fast.WriteAsync(Header(2000, FrameType.Continuation, FrameFlags.More, 1), Ct);
                await fast.WriteAsync(new byte[2000], Ct);
                sent += 2000;
                written += FrameHeader.Size + 2000;
                var expected = written;
                await ServerHarness.WaitUntil(() => h.Server.GetStatistics().BytesReceived >= expected && h.Server.MessagesInProgress >= 1, "the server read the chunk");
            }
        }

        var (code, message) = await ReadErrorAsync(slow);
        Assert.Equal(ProtocolErrorCode.ReceiveTooSlow, code);
        Assert.Contains("minimum receive rate of 100 bytes/s", message, StringComparison.Ordinal);
        var stats = h.Server.GetStatistics();
        Assert.Equal(1, stats.SlowConnectionsClosed);
        Assert.Equal(1, stats.OpenConnections);
        Assert.Equal(1, h.Server.MessagesInProgress);
    }

    [Fact]
    public async Task TheReassemblyBudgetIsSharedByAllConnectionsRefusesWithBusyAndIsReleasedWhenAConnectionAborts()
    {
        const int frame = 16 * 1024;
        await using var h = await ServerHarness.StartAsync(o =>
        {
            o.Limits = new ProtocolLimits { MaxFrameSize = frame, MaxMessageSize = 4 << 20 };
            o.MaxReassemblyBytes = 4 << 20;
        });

        // A holds a 4 MiB message three quarters sent: its buffer grew to the whole budget.
        var hog = await h.Transport.ConnectAsync(h.Address, Ct);
        await hog.WriteAsync(Preamble(), Ct);
        var sent = await SendPartialChunkedAsync(hog, total: 4 << 20, upTo: 3 << 20, frame);
        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().BytesReceived >= sent, "the server read the partial message");
        Assert.Equal(4 << 20, h.Server.GetStatistics().ReassemblyBytes);

        // B's chunked forward does not fit: refused on its stream with busy, its connection stays up.
        await using var client = await h.ConnectAsync();
        var id = client.Connection.NewStreamId();
        var input = h.Input(1, 128, seed: 3);
        await client.Connection.SendAsync(id, new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(input, 1, 128)), Ct);
        var refusal = Assert.IsType<ErrorMessage>((await client.NextAsync(id)).Message);
        Assert.Equal(ProtocolErrorCode.Busy, refusal.Code);
        Assert.Contains("limit 4194304", refusal.Message, StringComparison.Ordinal);
        Assert.Equal(1, h.Server.GetStatistics().ReassemblyRefusals);
        Assert.IsType<InfoResponse>((await client.CallAsync(InfoRequest.Instance)).Message);

        // A aborts: its buffer goes back to the budget, and B's retry goes through.
        hog.Abort("the test gives up");
        await hog.DisposeAsync();
        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().ReassemblyBytes == 0, "the aborted connection's buffer was released");
        var retry = client.Connection.NewStreamId();
        await client.Connection.SendAsync(retry, new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(input, 1, 128)), Ct);
        Assert.IsType<ForwardResponse>((await client.NextAsync(retry)).Message);
        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().ReassemblyBytes == 0, "the consumed message's buffer was released");
        Assert.Equal(4 << 20, h.Server.GetStatistics().PeakReassemblyBytes);
    }

    [Fact]
    public async Task AMessageTooLargeForTheWholeBudgetIsNotAcceptedAsAnOption()
    {
        var options = new BlockServerOptions { Blocks = ServerHarness.Span, ModelId = "m", MaxReassemblyBytes = 1 << 20 };
        var error = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(nameof(BlockServerOptions.MaxReassemblyBytes), error.ParamName);
        options.MaxReassemblyBytes = 64 << 20;
        options.MaxConnectionsPerAddress = 0;
        Assert.Equal(nameof(BlockServerOptions.MaxConnectionsPerAddress), Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
        options.MaxConnectionsPerAddress = 1;
        options.HandshakeTimeout = TimeSpan.Zero;
        Assert.Equal(nameof(BlockServerOptions.HandshakeTimeout), Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
        options.HandshakeTimeout = TimeSpan.FromSeconds(1);
        options.MinReceiveRate = -1;
        Assert.Equal(nameof(BlockServerOptions.MinReceiveRate), Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
    }

    [Fact]
    public void TheDefaultConnectionLimitStaysBelowTheFileDescriptorLimit()
    {
        var defaults = new BlockServerOptions();
        if (FileDescriptorLimit.Soft is { } soft)
        {
            Assert.True(defaults.MaxConnections <= Math.Max(16, soft / 2), $"{defaults.MaxConnections} connections for {soft} descriptors");
        }

        Assert.InRange(defaults.MaxConnections, 16, 4096);
        Assert.Equal(64, defaults.MaxConnectionsPerAddress);
        Assert.Equal(TimeSpan.FromSeconds(10), defaults.HandshakeTimeout);
        Assert.Equal(TimeSpan.FromSeconds(60), defaults.ConnectionIdleTimeout);
        Assert.Equal(1024, defaults.MinReceiveRate);
        Assert.Equal(256L << 20, defaults.MaxReassemblyBytes);
    }

    private static byte[] Preamble()
    {
        var preamble = new ConnectionPreamble("raw-client", ServerHarness.ModelId);
        var bytes = new byte[preamble.GetSize()];
        preamble.Write(bytes);
        return bytes;
    }

    private static byte[] Header(int length, FrameType type, FrameFlags flags, uint stream)
    {
        var bytes = new byte[FrameHeader.Size];
        new FrameHeader(length, type, flags, stream).Write(bytes);
        return bytes;
    }

    /// <summary>Sends the first <paramref name="upTo"/> bytes of a chunked ForwardRequest of <paramref name="total"/> bytes; returns the bytes written.</summary>
    private static async Task<long> SendPartialChunkedAsync(ITransportStream stream, int total, int upTo, int frame)
    {
        var buffer = new MemoryStream();
        var first = new byte[frame];
        BinaryPrimitives.WriteUInt32LittleEndian(first, (uint)total);
        buffer.Write(Header(frame, FrameType.ForwardRequest, FrameFlags.More, 1));
        buffer.Write(first);
        var sent = frame - 4;
        var chunk = new byte[frame];
        while (sent + frame <= upTo)
        {
            buffer.Write(Header(frame, FrameType.Continuation, FrameFlags.More, 1));
            buffer.Write(chunk);
            sent += frame;
        }

        await stream.WriteAsync(buffer.ToArray(), Ct);
        return buffer.Length + Preamble().Length;
    }

    /// <summary>Reads the server's preamble, then the Error frame it sent on stream 0.</summary>
    private static async Task<(ProtocolErrorCode Code, string Message)> ReadErrorAsync(ITransportStream stream)
    {
        var input = PipeReader.Create(stream.AsStream(leaveOpen: true));
        await ProtocolHandshake.ReadPreambleAsync(input, ProtocolLimits.Default, Ct).AsTask().WaitAsync(ServerHarness.Bound, Ct);
        using var reader = new ProtocolReader(input);
        var received = await reader.ReadAsync(Ct).AsTask().WaitAsync(ServerHarness.Bound, Ct);
        var error = Assert.IsType<ErrorMessage>(received?.Message);
        Assert.Equal(0u, received!.Value.StreamId);
        return (error.Code, error.Message);
    }

    private static async Task ReadToEndAsync(ITransportStream stream)
    {
        var buffer = new byte[4096];
        try
        {
            while (await stream.ReadAsync(buffer, Ct).AsTask().WaitAsync(ServerHarness.Bound, Ct) > 0)
            {
            }
        }
        catch (TransportException)
        {
            // Aborted: also closed.
        }
    }
}
