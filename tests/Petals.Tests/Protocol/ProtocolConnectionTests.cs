using System.Collections.Concurrent;
using System.Threading.Channels;
using Petals.Models;
using Petals.Protocol;
using Petals.Tensors;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Tests.Protocol;

/// <summary>Connections over the in-memory transport: handshake, calls in both directions, failures of one call and of the connection.</summary>
public sealed class ProtocolConnectionTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_call_is_answered_on_its_stream_and_both_sides_count_the_same_bytes()
    {
        await using var pair = await Pair.OpenAsync();
        var client = pair.Client;
        var id = client.Connection.NewStreamId();
        Assert.Equal(1u, id);
        await client.Connection.SendAsync(id, new InfoRequest(), Ct);
        var (stream, message) = await client.NextAsync();
        Assert.Equal(id, stream);
        var info = Assert.IsType<InfoResponse>(message);
        Assert.Equal("model-a", info.ModelId);
        Assert.Equal(new BlockRange(0, 4), info.Blocks);
        Assert.Equal(0, client.Connection.OpenCalls);

        Assert.Equal("server", client.Connection.Remote.PeerId);
        Assert.Equal("client", pair.Server.Connection.Remote.PeerId);
        Assert.Equal(client.Connection.BytesSent, pair.Server.Connection.BytesReceived);
        await WaitUntil(() => pair.Server.Connection.BytesSent == client.Connection.BytesReceived);
        Assert.True(client.Connection.BytesSent > 0);
    }

    [Fact]
    public async Task A_message_larger_than_a_frame_arrives_whole()
    {
        await using var pair = await Pair.OpenAsync();
        var values = new float[3 * 200_000];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = i * 0.25f;
        }

        var request = new ForwardRequest(new BlockRange(0, 4), WireCodec.Fp32, WireTensor.FromValues(new TensorShape(3, 200_000, 1), values));
        await pair.Client.Connection.SendAsync(pair.Client.Connection.NewStreamId(), request, Ct);
        var (_, message) = await pair.Client.NextAsync();
        var response = Assert.IsType<ForwardResponse>(message);
        Assert.Equal(values, pair.Client.LastTensor);
        Assert.Equal(new TensorShape(3, 200_000, 1), response.Hidden.Shape);
    }

    [Fact]
    public async Task Pings_on_stream_zero_are_answered_by_the_connection()
    {
        await using var pair = await Pair.OpenAsync();
        var rtt = await pair.Client.Connection.PingAsync(Ct).WaitAsync(Bound, Ct);
        Assert.True(rtt > TimeSpan.Zero);
        var rtt2 = await pair.Server.Connection.PingAsync(Ct).WaitAsync(Bound, Ct);
        Assert.True(rtt2 > TimeSpan.Zero);
        Assert.Empty(pair.Server.Messages);
    }

    [Fact]
    public async Task A_message_out_of_order_fails_only_its_stream()
    {
        await using var pair = await Pair.OpenAsync();
        var client = pair.Client.Connection;

        // A step on a stream that never opened a session.
        var step = new InferenceStep(1, 0, WireTensor.FromValues(new TensorShape(1, 1, 2), new float[] { 1, 2 }));
        await client.SendAsync(7, step, Ct);
        var (stream, message) = await pair.Client.NextAsync();
        Assert.Equal(7u, stream);
        var error = Assert.IsType<ErrorMessage>(message);
        Assert.Equal(ProtocolErrorCode.OutOfOrder, error.Code);
        Assert.Contains("no inference session", error.Message, StringComparison.Ordinal);
        var failed = await pair.Server.Failures.Reader.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(7u, failed.StreamId);

        // The connection still serves calls.
        await client.SendAsync(client.NewStreamId(), new InfoRequest(), Ct);
        Assert.IsType<InfoResponse>((await pair.Client.NextAsync()).Message);
    }

    [Fact]
    public async Task Garbage_after_the_handshake_fails_the_connection_with_an_error_frame_on_stream_zero()
    {
        var transport = new MemoryTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://server"), Ct);
        var serverSide = Task.Run(async () =>
        {
            var stream = await listener.AcceptAsync(Ct);
            await using var connection = await ProtocolConnection.AcceptAsync(stream, new ConnectionPreamble("server", "model-a"), cancellationToken: Ct);
            var handler = new RecordingHandler();
            return await Assert.ThrowsAsync<ProtocolException>(() => connection.RunAsync(handler, Ct));
        }, Ct);

        await using var raw = await transport.ConnectAsync(listener.LocalAddress, Ct);
        var preamble = new ConnectionPreamble("client", "model-a");
        var bytes = new byte[preamble.GetSize()];
        preamble.Write(bytes);
        await raw.WriteAsync(bytes, Ct);
        await raw.WriteAsync(new byte[] { 0xFF, 0xFF, 0xFF, 0x7F, 0x01, 0, 0, 0, 0, 0 }, Ct); // a 2 GiB frame header

        var serverError = await serverSide.WaitAsync(Bound, Ct);
        Assert.Equal(ProtocolErrorCode.FrameTooLarge, serverError.Code);
        Assert.True(serverError.IsConnectionFatal);

        // The client sees the server's preamble and then an Error frame on stream 0 naming the problem, then the end.
        var received = await ReadToEndAsync(raw);
        var reader = new System.IO.Pipelines.Pipe();
        await reader.Writer.WriteAsync(received, Ct);
        await reader.Writer.CompleteAsync();
        var remote = await ProtocolHandshake.ReadPreambleAsync(reader.Reader, ProtocolLimits.Default, Ct);
        Assert.Equal("server", remote.PeerId);
        using var frames = new ProtocolReader(reader.Reader);
        var error = await frames.ReadAsync(Ct);
        Assert.Equal(0u, error!.Value.StreamId);
        Assert.Equal(ProtocolErrorCode.FrameTooLarge, Assert.IsType<ErrorMessage>(error.Value.Message).Code);
        Assert.Null(await frames.ReadAsync(Ct));
    }

    [Fact]
    public async Task A_model_mismatch_fails_both_handshakes_with_the_names()
    {
        var transport = new MemoryTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://server"), Ct);
        var accept = Task.Run(async () =>
        {
            var stream = await listener.AcceptAsync(Ct);
            return await Assert.ThrowsAsync<ProtocolException>(() => ProtocolConnection.AcceptAsync(stream, new ConnectionPreamble("server", "model-a"), cancellationToken: Ct));
        }, Ct);
        var client = await Assert.ThrowsAsync<ProtocolException>(() => ProtocolConnection.ConnectAsync(transport, listener.LocalAddress, new ConnectionPreamble("client", "model-b"), cancellationToken: Ct));
        var server = await accept.WaitAsync(Bound, Ct);
        Assert.Equal(ProtocolErrorCode.ModelMismatch, client.Code);
        Assert.Equal(ProtocolErrorCode.ModelMismatch, server.Code);
        Assert.Contains("model-a", client.Message, StringComparison.Ordinal);
        Assert.Contains("model-b", client.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_peer_that_sends_no_preamble_is_told_it_is_bad_and_dropped()
    {
        var transport = new MemoryTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://server"), Ct);
        var accept = Task.Run(async () =>
        {
            var stream = await listener.AcceptAsync(Ct);
            return await Assert.ThrowsAsync<ProtocolException>(() => ProtocolConnection.AcceptAsync(stream, new ConnectionPreamble("server", "model-a"), cancellationToken: Ct));
        }, Ct);
        await using var raw = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await raw.WriteAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray(), Ct);
        await raw.CompleteWritesAsync(Ct);
        var error = await accept.WaitAsync(Bound, Ct);
        Assert.Equal(ProtocolErrorCode.BadPreamble, error.Code);
        var received = await ReadToEndAsync(raw);
        Assert.True(received.Length > 10, "the server sent its preamble and an error frame");
    }

    [Fact]
    public async Task The_read_loop_ends_normally_when_the_peer_closes_and_a_dispose_stops_a_running_loop()
    {
        var pair = await Pair.OpenAsync();
        await pair.Client.Connection.DisposeAsync();
        await pair.Server.Run.WaitAsync(Bound, Ct);
        await pair.Server.Connection.DisposeAsync().AsTask().WaitAsync(Bound, Ct);
        await pair.DisposeAsync();
    }

    [Fact]
    public async Task An_aborted_connection_fails_the_peer_read_loop_with_the_reason()
    {
        await using var pair = await Pair.OpenAsync();
        pair.Client.Connection.Abort("client crashed");
        var error = await Assert.ThrowsAsync<TransportException>(() => pair.Server.Run.WaitAsync(Bound, Ct));
        Assert.Contains("client crashed", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAnyAsync<Exception>(() => pair.Client.Connection.SendAsync(1, new InfoRequest(), Ct).AsTask());
    }

    [Fact]
    public async Task Sends_after_dispose_fail_as_disposed_instead_of_waiting()
    {
        var pair = await Pair.OpenAsync();
        await pair.Client.Connection.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await pair.Client.Connection.SendAsync(1, new InfoRequest(), Ct).AsTask().WaitAsync(Bound, Ct));
        await pair.DisposeAsync();
    }

    [Fact]
    public async Task A_send_canceled_part_way_through_a_message_aborts_the_connection_instead_of_tearing_the_frame()
    {
        // A small transport buffer and a peer that does not read yet: the big message stalls part-way out.
        var transport = new MemoryTransport(bufferBytes: 64 * 1024);
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://stalled"), Ct);
        var accept = Task.Run(async () => await ProtocolConnection.AcceptAsync(await listener.AcceptAsync(Ct), new ConnectionPreamble("server", "model-a"), cancellationToken: Ct), Ct);
        await using var client = await ProtocolConnection.ConnectAsync(transport, listener.LocalAddress, new ConnectionPreamble("client", "model-a"), cancellationToken: Ct);
        await using var server = await accept.WaitAsync(Bound, Ct);
        var clientRun = client.RunAsync(new RecordingHandler(), Ct);

        var values = new float[1_000_000];
        var request = new ForwardRequest(new BlockRange(0, 4), WireCodec.Fp32, WireTensor.FromValues(new TensorShape(1, 1000, 1000), values));
        using (var soon = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            soon.CancelAfter(TimeSpan.FromMilliseconds(300));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await client.SendAsync(client.NewStreamId(), request, soon.Token).AsTask().WaitAsync(Bound, Ct));
        }

        // The peer now reads: it must see a broken connection, never the rest of a torn frame or its bytes again.
        var serverHandler = new RecordingHandler();
        var serverRun = server.RunAsync(serverHandler, Ct);
        await Assert.ThrowsAsync<TransportException>(() => serverRun.WaitAsync(Bound, Ct));
        Assert.Empty(serverHandler.Messages);
        await Assert.ThrowsAsync<TransportException>(async () => await client.SendAsync(client.NewStreamId(), new InfoRequest(), Ct).AsTask().WaitAsync(Bound, Ct));
        await Assert.ThrowsAnyAsync<Exception>(() => clientRun.WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task The_read_loop_runs_once()
    {
        await using var pair = await Pair.OpenAsync();
        Assert.Throws<InvalidOperationException>(() => { _ = pair.Client.Connection.RunAsync(new RecordingHandler(), Ct); });
    }

    [Fact]
    public async Task Concurrent_calls_from_many_threads_each_get_their_own_answer()
    {
        await using var pair = await Pair.OpenAsync();
        var client = pair.Client.Connection;
        var ids = new ConcurrentBag<uint>();
        await Task.WhenAll(Enumerable.Range(0, 64).Select(_ => Task.Run(async () =>
        {
            var id = client.NewStreamId();
            ids.Add(id);
            await client.SendAsync(id, new PingMessage(id), Ct);
        }, Ct)));

        var answered = new HashSet<uint>();
        for (var i = 0; i < 64; i++)
        {
            var (stream, message) = await pair.Client.NextAsync();
            Assert.Equal(stream, (uint)Assert.IsType<PongMessage>(message).Nonce);
            answered.Add(stream);
        }

        Assert.Equal(ids.Order(), answered.Order());
        Assert.All(answered, id => Assert.Equal(1u, id % 2));
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not become true in time");
            await Task.Delay(5, Ct);
        }
    }

    private static async Task<byte[]> ReadToEndAsync(ITransportStream stream)
    {
        using var all = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = await stream.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct)) > 0)
        {
            all.Write(buffer, 0, n);
        }

        return all.ToArray();
    }

    /// <summary>Records what arrives; as the server it answers info, ping and forward (echo) calls.</summary>
    private sealed class RecordingHandler : IProtocolMessageHandler
    {
        private readonly Channel<(uint StreamId, ProtocolMessage Message)> _messages = Channel.CreateUnbounded<(uint, ProtocolMessage)>();

        public List<ProtocolMessage> Messages { get; } = [];

        public Channel<ProtocolException> Failures { get; } = Channel.CreateUnbounded<ProtocolException>();

        public float[]? LastTensor { get; private set; }

        public async ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken)
        {
            Messages.Add(message);
            switch (message)
            {
                case InfoRequest when connection.Role == CallRole.Callee:
                    await connection.SendAsync(streamId, new InfoResponse(1, 0, "model-a", new BlockRange(0, 4), 64, TensorDType.F32, WireCodecs.All, 100, 1 << 20, 64 << 20, 8, 512), cancellationToken);
                    return;
                case PingMessage ping when connection.Role == CallRole.Callee:
                    await connection.SendAsync(streamId, new PongMessage(ping.Nonce), cancellationToken);
                    return;
                case ForwardRequest forward:
                    // Tensors are only valid during this call: copy before answering.
                    var values = forward.Hidden.ToArray();
                    await connection.SendAsync(streamId, new ForwardResponse(WireTensor.FromValues(forward.Hidden.Shape, values, forward.ReplyCodec)), cancellationToken);
                    return;
                case ForwardResponse response:
                    LastTensor = response.Hidden.ToArray();
                    break;
            }

            await _messages.Writer.WriteAsync((streamId, message), cancellationToken);
        }

        public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure) => Failures.Writer.TryWrite(failure);

        public async Task<(uint StreamId, ProtocolMessage Message)> NextAsync() => await _messages.Reader.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
    }

    private sealed record Side(ProtocolConnection Connection, RecordingHandler Handler, Task Run)
    {
        public List<ProtocolMessage> Messages => Handler.Messages;

        public Channel<ProtocolException> Failures => Handler.Failures;

        public float[]? LastTensor => Handler.LastTensor;

        public Task<(uint StreamId, ProtocolMessage Message)> NextAsync() => Handler.NextAsync();
    }

    private sealed class Pair : IAsyncDisposable
    {
        private ITransportListener _listener = null!;

        public Side Client { get; private set; } = null!;

        public Side Server { get; private set; } = null!;

        public static async Task<Pair> OpenAsync()
        {
            var transport = new MemoryTransport();
            var pair = new Pair { _listener = await transport.ListenAsync(PeerAddress.Parse("mem://server"), Ct) };
            var accept = Task.Run(async () => await ProtocolConnection.AcceptAsync(await pair._listener.AcceptAsync(Ct), new ConnectionPreamble("server", "model-a"), cancellationToken: Ct), Ct);
            var client = await ProtocolConnection.ConnectAsync(transport, pair._listener.LocalAddress, new ConnectionPreamble("client", "model-a"), cancellationToken: Ct);
            var server = await accept.WaitAsync(Bound, Ct);
            var clientHandler = new RecordingHandler();
            var serverHandler = new RecordingHandler();
            pair.Client = new Side(client, clientHandler, client.RunAsync(clientHandler, Ct));
            pair.Server = new Side(server, serverHandler, server.RunAsync(serverHandler, Ct));
            return pair;
        }

        public async ValueTask DisposeAsync()
        {
            await Client.Connection.DisposeAsync().AsTask().WaitAsync(Bound, Ct);
            await Server.Connection.DisposeAsync().AsTask().WaitAsync(Bound, Ct);
            await _listener.DisposeAsync();
        }
    }
}
