using System.Buffers.Binary;
using System.Text;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Tests.Server;

/// <summary>Clients that break the protocol get a precise error on stream 0, and the server keeps serving others.</summary>
public sealed class BlockServerBadClientTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task AWrongProtocolVersionIsRefusedWithVersionMismatch()
    {
        await using var h = await ServerHarness.StartAsync();
        var (code, message) = await SendRawAsync(h, Preamble(major: 2, model: ServerHarness.ModelId));
        Assert.Equal("version_mismatch", code);
        Assert.Contains("2", message, StringComparison.Ordinal);
        await AssertStillServesAsync(h);
    }

    [Fact]
    public async Task AWrongModelIsRefusedWithModelMismatchNamingBoth()
    {
        await using var h = await ServerHarness.StartAsync();
        var (code, message) = await SendRawAsync(h, Preamble(major: 1, model: "another-model"));
        Assert.Equal("model_mismatch", code);
        Assert.Contains("another-model", message, StringComparison.Ordinal);
        Assert.Contains(ServerHarness.ModelId, message, StringComparison.Ordinal);
        await AssertStillServesAsync(h);

        // The typed client side reports the same.
        var ex = await Assert.ThrowsAsync<ProtocolException>(() => h.ConnectAsync("another-model"));
        Assert.Equal(ProtocolErrorCode.ModelMismatch, ex.Code);
        await AssertStillServesAsync(h);
    }

    [Fact]
    public async Task GarbageBytesAreRefusedWithBadPreamble()
    {
        await using var h = await ServerHarness.StartAsync();
        var (code, _) = await SendRawAsync(h, Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        Assert.Equal("bad_preamble", code);
        await AssertStillServesAsync(h);
    }

    [Fact]
    public async Task AnOversizedFrameIsRefusedWithFrameTooLargeAndAGarbledOneWithItsCode()
    {
        await using var h = await ServerHarness.StartAsync();
        var limit = h.Server.Options.Limits.MaxFrameSize;
        var (code, message) = await SendRawAsync(h, [.. Preamble(1, ServerHarness.ModelId), .. FrameHeader((uint)limit + 1, type: 0x05, streamId: 1)]);
        Assert.Equal("frame_too_large", code);
        Assert.Contains(limit.ToString(System.Globalization.CultureInfo.InvariantCulture), message, StringComparison.Ordinal);

        var (code2, _) = await SendRawAsync(h, [.. Preamble(1, ServerHarness.ModelId), .. FrameHeader(0, type: 0x7E, streamId: 1)]);
        Assert.Equal("unknown_frame_type", code2);
        await AssertStillServesAsync(h);
    }

    [Fact]
    public async Task ABadConnectionDoesNotDisturbASessionOnAnotherConnection()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var good = await h.ConnectAsync();
        var session = await BlockServerTests.Session.OpenAsync(good, h, maxLength: 16);
        await session.StepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);
        await SendRawAsync(h, Encoding.ASCII.GetBytes("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"));
        var (code, _) = await SendRawAsync(h, [.. Preamble(1, ServerHarness.ModelId), .. FrameHeader(5, type: 0x01, streamId: 1), 1, 2, 3, 4, 5], expectedStream: 1);
        Assert.Equal("trailing_bytes", code);
        Assert.Equal(3, (await session.StepAsync(2, 2, h.Input(1, 1, seed: 2), 1, 1)).Position);
    }

    [Fact]
    public async Task AClientThatNeverReadsItsStepResultsLosesTheSessionAndItsCacheIsFreed()
    {
        // A small transport buffer, so the results the client never reads stall the server's sends.
        await using var h = await ServerHarness.StartAsync(o => o.SessionIdleTimeout = TimeSpan.FromSeconds(1), new Petals.Testing.Transport.MemoryTransport(bufferBytes: 16 * 1024));
        await using var stalled = await ProtocolConnection.ConnectAsync(h.Transport, h.Address, new ConnectionPreamble("never-reads", ServerHarness.ModelId), cancellationToken: Ct)
            .WaitAsync(ServerHarness.Bound, Ct);
        var stream = stalled.NewStreamId();
        await stalled.SendAsync(stream, new InferenceOpen(Guid.NewGuid(), ServerHarness.Span, 128, WireCodec.Fp32), Ct);
        var step = new InferenceStep(1, 0, h.Tensor(h.Input(2, 128, seed: 1), 2, 128));
        for (var i = 0; i < 20; i++)
        {
            // The first is applied, the others are retransmissions: each is answered with the full result again.
            await stalled.SendAsync(stream, step, Ct).AsTask().WaitAsync(ServerHarness.Bound, Ct);
        }

        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().InferenceSteps == 1, "the step ran");
        await ServerHarness.WaitUntil(
            () => h.Server.ActiveSessions == 0 && h.Server.CacheTokensLeft == h.Server.Options.CacheTokens,
            "the stalled session ended and freed its cache",
            TimeSpan.FromSeconds(30));
        await AssertStillServesAsync(h);
    }

    [Fact]
    public async Task AClientThatSendsRequestsButNeverReadsIsDisconnectedAfterTheIdleTimeout()
    {
        // Info answers pile up in a small transport buffer the client never reads: the server's read loop stalls in its
        // send until the idle timeout, then drops the connection instead of holding it until shutdown.
        await using var h = await ServerHarness.StartAsync(o => o.SessionIdleTimeout = TimeSpan.FromSeconds(1), new Petals.Testing.Transport.MemoryTransport(bufferBytes: 4 * 1024));
        await using var raw = await h.Transport.ConnectAsync(h.Address, Ct);
        await raw.WriteAsync(Preamble(1, ServerHarness.ModelId), Ct);
        var requests = new byte[10 * 2000];
        for (var i = 0; i < 2000; i++)
        {
            FrameHeader(0, 0x01, (uint)((2 * i) + 1)).CopyTo(requests, i * 10);
        }

        await raw.WriteAsync(requests, Ct).AsTask().WaitAsync(ServerHarness.Bound, Ct);
        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().ConnectionsAccepted == 1, "the connection was accepted");
        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().ActiveConnections == 0, "the connection that never reads was dropped", TimeSpan.FromSeconds(30));
        await AssertStillServesAsync(h);
    }

    [Fact]
    public async Task ClosingASessionWhoseResultIsStillGoingOutKeepsTheConnectionAndItsOtherSessions()
    {
        // A small transport buffer and a client that reads only later: session A's result is still going out when A is closed.
        await using var h = await ServerHarness.StartAsync(transport: new Petals.Testing.Transport.MemoryTransport(bufferBytes: 16 * 1024));
        var connection = await ProtocolConnection.ConnectAsync(h.Transport, h.Address, new ConnectionPreamble("late-reader", ServerHarness.ModelId), cancellationToken: Ct)
            .WaitAsync(ServerHarness.Bound, Ct);
        var a = connection.NewStreamId();
        var b = connection.NewStreamId();
        await connection.SendAsync(a, new InferenceOpen(Guid.NewGuid(), ServerHarness.Span, 128, WireCodec.Fp32), Ct);
        await connection.SendAsync(b, new InferenceOpen(Guid.NewGuid(), ServerHarness.Span, 16, WireCodec.Fp32), Ct);
        await connection.SendAsync(a, new InferenceStep(1, 0, h.Tensor(h.Input(2, 128, seed: 1), 2, 128)), Ct);
        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().InferenceSteps == 1, "session A's step ran");
        await connection.SendAsync(a, InferenceClose.Instance, Ct);
        await ServerHarness.WaitUntil(() => h.Server.GetStatistics().BytesReceived >= connection.BytesSent, "the server read the close");
        await Task.Delay(200, Ct);

        // Now the client reads: session B on the same connection still works.
        var client = new TestClientHandler();
        var run = connection.RunAsync(client, Ct);
        try
        {
            await connection.SendAsync(b, new InferenceStep(1, 0, h.Tensor(h.Input(1, 2, seed: 2), 1, 2)), Ct);
            var result = Assert.IsType<InferenceStepResult>(await client.NextAsync(b));
            Assert.Equal(2, result.Position);
        }
        finally
        {
            await connection.DisposeAsync();
            try
            {
                await run.WaitAsync(ServerHarness.Bound, Ct);
            }
            catch (Exception e) when (e is OperationCanceledException or TransportException or ProtocolException or ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>Collects messages per stream.</summary>
    private sealed class TestClientHandler : IProtocolMessageHandler
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<uint, System.Threading.Channels.Channel<ProtocolMessage>> _streams = new();

        public ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken)
        {
            // Only the fixed fields are read later; a tensor would not outlive this call.
            Stream(streamId).Writer.TryWrite(message);
            return ValueTask.CompletedTask;
        }

        public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure) =>
            Stream(streamId).Writer.TryWrite(ErrorMessage.From(failure, ProtocolLimits.Default));

        public async Task<ProtocolMessage> NextAsync(uint streamId) =>
            await Stream(streamId).Reader.ReadAsync(Ct).AsTask().WaitAsync(ServerHarness.Bound, Ct);

        private System.Threading.Channels.Channel<ProtocolMessage> Stream(uint id) => _streams.GetOrAdd(id, _ => System.Threading.Channels.Channel.CreateUnbounded<ProtocolMessage>());
    }

    [Fact]
    public async Task AnErrorFromTheClientEndsItsSessionAndIsNotAnsweredWithAnError()
    {
        await using var h = await ServerHarness.StartAsync();
        await using var client = await h.ConnectAsync();
        var session = await BlockServerTests.Session.OpenAsync(client, h, maxLength: 16);
        await session.StepAsync(1, 0, h.Input(1, 2, seed: 1), 1, 2);
        Assert.True(h.Server.CacheTokensLeft < h.Server.Options.CacheTokens);

        // The client abandons the session with an error (as a client does when it rejects what arrived on the stream).
        await client.Connection.SendAsync(session.StreamId, new ErrorMessage(ProtocolErrorCode.OutOfOrder, "the client gave up on this stream"), Ct);

        // Messages are answered in order: once the info call is answered, an answer to the error would have arrived too.
        Assert.IsType<InfoResponse>((await client.CallAsync(InfoRequest.Instance)).Message);
        await Assert.ThrowsAsync<TimeoutException>(() => client.NextAsync(session.StreamId, TimeSpan.FromMilliseconds(200)));
        await ServerHarness.WaitUntil(
            () => h.Server.ActiveSessions == 0 && h.Server.CacheTokensLeft == h.Server.Options.CacheTokens,
            "the abandoned session ended and freed its cache",
            TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task APassThatFailsUnexpectedlyIsAnsweredWithInternalAndTheServerStopsCleanly()
    {
        var h = await ServerHarness.StartAsync(wrap: e => new FailingForwardExecutor(e));
        try
        {
            await using var client = await h.ConnectAsync();
            var id = client.Connection.NewStreamId();
            await client.Connection.SendAsync(id, new ForwardRequest(ServerHarness.Span, WireCodec.Fp32, h.Tensor(h.Input(1, 2, seed: 1), 1, 2)), Ct);
            var error = Assert.IsType<ErrorMessage>((await client.NextAsync(id, TimeSpan.FromSeconds(30))).Message);
            Assert.Equal(ProtocolErrorCode.Internal, error.Code);
            Assert.Contains("the backend cannot run this", error.Message, StringComparison.Ordinal);

            var session = await BlockServerTests.Session.OpenAsync(client, h, maxLength: 16);
            await session.SendStepAsync(1, 0, h.Input(1, 2, seed: 2), 1, 2);
            var stepError = Assert.IsType<ErrorMessage>((await client.NextAsync(session.StreamId, TimeSpan.FromSeconds(30))).Message);
            Assert.Equal(ProtocolErrorCode.Internal, stepError.Code);
            Assert.Contains("the backend cannot run this", stepError.Message, StringComparison.Ordinal);
            await ServerHarness.WaitUntil(() => h.Server.ActiveSessions == 0 && h.Server.CacheTokensLeft == h.Server.Options.CacheTokens, "the failed session freed its cache");
            await AssertStillServesAsync(h);
        }
        finally
        {
            await h.Server.StopAsync(Ct).WaitAsync(ServerHarness.Bound, Ct);
            await h.DisposeAsync();
        }
    }

    /// <summary>An executor whose stateless forward pass throws an exception type the server does not expect.</summary>
    private sealed class FailingForwardExecutor(Petals.Execution.IBlockExecutor inner) : Petals.Execution.IBlockExecutor
    {
        public Petals.Models.ModelConfig Config => inner.Config;

        public Petals.Models.BlockRange Blocks => inner.Blocks;

        public Petals.Execution.IKvCache CreateCache(int batchSize, int maxLength) => inner.CreateCache(batchSize, maxLength);

        public void Forward(Span<float> hidden, int batchSize, int tokenCount, Petals.Execution.IKvCache? cache) =>
            throw new NotSupportedException("the backend cannot run this");

        public object? GetService(Type serviceType, object? serviceKey = null) => inner.GetService(serviceType, serviceKey);

        public void Dispose() => inner.Dispose();
    }

    private static async Task AssertStillServesAsync(ServerHarness h)
    {
        await using var client = await h.ConnectAsync();
        Assert.IsType<InfoResponse>((await client.CallAsync(InfoRequest.Instance)).Message);
    }

    private static byte[] Preamble(ushort major, string model)
    {
        var peer = "raw-client"u8.ToArray();
        var modelBytes = Encoding.UTF8.GetBytes(model);
        var body = new byte[2 + 2 + 4 + 1 + peer.Length + 1 + modelBytes.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(body, major);
        BinaryPrimitives.WriteUInt16LittleEndian(body.AsSpan(2), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(4), 1 << 20);
        body[8] = (byte)peer.Length;
        peer.CopyTo(body, 9);
        body[9 + peer.Length] = (byte)modelBytes.Length;
        modelBytes.CopyTo(body, 10 + peer.Length);
        var result = new byte[6 + body.Length];
        "PTLS"u8.CopyTo(result);
        BinaryPrimitives.WriteUInt16LittleEndian(result.AsSpan(4), (ushort)body.Length);
        body.CopyTo(result, 6);
        return result;
    }

    private static byte[] FrameHeader(uint payloadLength, byte type, uint streamId)
    {
        var header = new byte[10];
        BinaryPrimitives.WriteUInt32LittleEndian(header, payloadLength);
        header[4] = type;
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(6), streamId);
        return header;
    }

    /// <summary>Writes <paramref name="bytes"/> on a raw stream, reads until the server closes, and decodes the Error frame on stream 0 after its preamble.</summary>
    private static async Task<(string Code, string Message)> SendRawAsync(ServerHarness h, byte[] bytes, uint expectedStream = 0)
    {
        await using var stream = await h.Transport.ConnectAsync(h.Address, Ct);
        await stream.WriteAsync(bytes, Ct);
        await stream.CompleteWritesAsync(Ct);
        using var received = new MemoryStream();
        var buffer = new byte[4096];
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        bound.CancelAfter(ServerHarness.Bound);
        while (true)
        {
            int n;
            try
            {
                n = await stream.ReadAsync(buffer, bound.Token);
            }
            catch (TransportException)
            {
                break;
            }

            if (n == 0)
            {
                break;
            }

            received.Write(buffer, 0, n);
        }

        var data = received.ToArray();
        Assert.True(data.Length > 6 && data.AsSpan(0, 4).SequenceEqual("PTLS"u8), "The server sent no preamble.");
        var offset = 6 + BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan(4));
        Assert.True(data.Length >= offset + 10, "The server closed without an Error frame.");
        var frame = data.AsSpan(offset);
        var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(frame);
        Assert.Equal(0x0B, frame[4]);
        Assert.Equal(expectedStream, BinaryPrimitives.ReadUInt32LittleEndian(frame[6..]));
        var payload = frame.Slice(10, length);
        var codeLength = BinaryPrimitives.ReadUInt16LittleEndian(payload);
        var code = Encoding.UTF8.GetString(payload.Slice(2, codeLength));
        var rest = payload[(2 + codeLength)..];
        var messageLength = BinaryPrimitives.ReadUInt16LittleEndian(rest);
        return (code, Encoding.UTF8.GetString(rest.Slice(2, messageLength)));
    }
}
