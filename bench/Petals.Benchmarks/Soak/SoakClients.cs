using System.Buffers.Binary;
using System.Net;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Threading.Channels;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Benchmarks.Soak;

/// <summary>A protocol handler that queues what arrives, per stream (tensors are copied out: they die with the call).</summary>
internal sealed class StreamRouter : IProtocolMessageHandler
{
    private readonly ConcurrentDictionary<uint, Channel<ProtocolMessage>> _streams = new();

    public async Task<ProtocolMessage> NextAsync(uint streamId, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(timeout);
        try
        {
            return await Stream(streamId).Reader.ReadAsync(bounded.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"no answer on stream {streamId} within {timeout.TotalSeconds:0} s");
        }
        finally
        {
            _streams.TryRemove(streamId, out _);
        }
    }

    public ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken)
    {
        // Only the kind and code matter to the soak; step results are replaced by an empty marker (no tensor kept).
        ProtocolMessage kept = message switch
        {
            InferenceStepResult r => new InferenceStepResult(r.StepId, r.Position, WireTensor.FromValues(new TensorShape(1), new float[1])),
            ForwardResponse => new ForwardResponse(WireTensor.FromValues(new TensorShape(1), new float[1])),
            _ => message,
        };
        Stream(streamId).Writer.TryWrite(kept);
        return ValueTask.CompletedTask;
    }

    public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException error) =>
        Stream(streamId).Writer.TryWrite(ErrorMessage.From(error, ProtocolLimits.Default));

    private Channel<ProtocolMessage> Stream(uint id) => _streams.GetOrAdd(id, _ => Channel.CreateUnbounded<ProtocolMessage>());
}

/// <summary>
/// A connection that completed the protocol handshake and then writes raw protocol bytes (slowloris, partial chunked
/// messages) through the transport's framing; a drain loop notices when the server closes it.
/// </summary>
internal sealed class RawProtocolClient : IAsyncDisposable
{
    private readonly RawTcpStream _stream;
    private readonly PipeReader _input;
    private readonly Task _drain;
    private readonly CancellationTokenSource _stop = new();

    private RawProtocolClient(RawTcpStream stream, PipeReader input, int frameLimit)
    {
        _stream = stream;
        _input = input;
        FrameLimit = frameLimit;
        _drain = DrainAsync();
    }

    public int FrameLimit { get; }

    public bool IsClosed { get; private set; }

    public static async Task<RawProtocolClient> ConnectAsync(PeerAddress server, string modelId, IPAddress? local, CancellationToken cancellationToken)
    {
        var stream = await RawTcpStream.ConnectAsync(server, local, cancellationToken).ConfigureAwait(false);
        try
        {
            var io = stream.AsStream(leaveOpen: true);
            var input = PipeReader.Create(io, new StreamPipeReaderOptions(leaveOpen: true));
            var output = PipeWriter.Create(io, new StreamPipeWriterOptions(leaveOpen: true));
            var handshake = await ProtocolHandshake.PerformAsync(new Duplex(input, output), new ConnectionPreamble("soak-raw", modelId), ProtocolLimits.Default, cancellationToken).ConfigureAwait(false);
            return new RawProtocolClient(stream, input, handshake.FrameLimit);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Writes <paramref name="bytes"/> as they are (one transport data frame); false when the connection is gone.</summary>
    public async Task<bool> TryWriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        if (IsClosed)
        {
            return false;
        }

        try
        {
            await _stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or ObjectDisposedException or IOException)
        {
            IsClosed = true;
            return false;
        }
    }

    /// <summary>The 10-byte protocol frame header.</summary>
    public static byte[] Header(int payloadLength, FrameType type, FrameFlags flags, uint streamId)
    {
        var header = new byte[FrameHeader.Size];
        new FrameHeader(payloadLength, type, flags, streamId).Write(header);
        return header;
    }

    /// <summary>The first frame of a chunked message: header, u32 total length; the caller sends the rest of its payload.</summary>
    public byte[] FirstChunkHeader(FrameType type, uint streamId, int totalLength)
    {
        var bytes = new byte[FrameHeader.Size + 4];
        new FrameHeader(FrameLimit, type, FrameFlags.More, streamId).Write(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(FrameHeader.Size), (uint)totalLength);
        return bytes;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
        await _drain.ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task DrainAsync()
    {
        try
        {
            while (true)
            {
                var result = await _input.ReadAsync(_stop.Token).ConfigureAwait(false);
                _input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException or ObjectDisposedException or TransportException)
        {
        }

        if (!_stop.IsCancellationRequested)
        {
            IsClosed = true;
        }
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;

        public PipeWriter Output => output;
    }
}

/// <summary>Counters of one hostile phase, printed with each sample.</summary>
internal sealed class PhaseCounters
{
    private readonly ConcurrentDictionary<string, long> _values = new(StringComparer.Ordinal);

    public string? FirstError { get; set; }

    public void Add(string name, long delta = 1) => _values.AddOrUpdate(name, delta, (_, v) => v + delta);

    public void Set(string name, long value) => _values[name] = value;

    public IReadOnlyDictionary<string, long> Snapshot() => new SortedDictionary<string, long>(_values, StringComparer.Ordinal);

    public override string ToString() => string.Join(' ', Snapshot().Select(kv => $"{kv.Key}={kv.Value}"));
}
