using System.Buffers.Binary;
using System.IO.Pipelines;
using Petals.Protocol;

namespace Petals.Tests.Protocol;

[Collection(ProtocolTestGroup.Name)]
public sealed class ProtocolReaderTests
{
    private static readonly ProtocolLimits Limits = new() { MaxFrameSize = 1024, MaxMessageSize = 8192, MaxStringBytes = 64, MaxHypoIds = 8 };

    private static byte[] Frame(FrameType type, FrameFlags flags, uint stream, params byte[] payload)
    {
        var bytes = new byte[FrameHeader.Size + payload.Length];
        new FrameHeader(payload.Length, type, flags, stream).Write(bytes);
        payload.CopyTo(bytes, FrameHeader.Size);
        return bytes;
    }

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static ProtocolException ReadFails(byte[] bytes, ProtocolErrorCode code, string fragment)
    {
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), Limits);
        var ex = Assert.Throws<ProtocolException>(() =>
        {
            while (ProtocolTestKit.ReadNow(reader) is not null)
            {
            }
        });
        Assert.Equal(code, ex.Code);
        Assert.Contains(fragment, ex.Message, StringComparison.Ordinal);
        return ex;
    }

    private static byte[] TensorBytes(byte codec, byte rank, params uint[] dims)
    {
        var bytes = new List<byte> { codec, rank };
        foreach (var d in dims)
        {
            bytes.AddRange(BitConverter.GetBytes(d));
        }

        return bytes.ToArray();
    }

    [Fact]
    public async Task OversizedFrameIsRejectedOnItsHeaderWithoutWaitingForThePayload()
    {
        var pipe = new Pipe();
        using var reader = new ProtocolReader(pipe.Reader, Limits);
        var header = new byte[FrameHeader.Size];
        new FrameHeader(1025, FrameType.ForwardResponse, FrameFlags.None, 3).Write(header);
        await pipe.Writer.WriteAsync(header, TestContext.Current.CancellationToken);

        // The writer stays open: a reader that waited for 1025 payload bytes would hang here.
        var read = reader.ReadAsync(TestContext.Current.CancellationToken).AsTask();
        var ex = await Assert.ThrowsAsync<ProtocolException>(() => read.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken));
        Assert.Equal(ProtocolErrorCode.FrameTooLarge, ex.Code);
        Assert.Contains("1025", ex.Message, StringComparison.Ordinal);
        Assert.True(ex.IsConnectionFatal);

        // Faulted: later reads report the same error.
        var again = await Assert.ThrowsAsync<ProtocolException>(async () => await reader.ReadAsync(TestContext.Current.CancellationToken));
        Assert.Same(ex, again);
    }

    [Fact]
    public void UnknownTypeReservedFlagsAndConnectionStreamMisuseAreFramingErrors()
    {
        Assert.True(ReadFails(Frame((FrameType)0x42, FrameFlags.None, 1), ProtocolErrorCode.UnknownFrameType, "0x42").IsConnectionFatal);
        ReadFails(Frame(FrameType.Ping, (FrameFlags)0x80, 1, new byte[8]), ProtocolErrorCode.InvalidFlags, "0x80");
        ReadFails(Frame(FrameType.ForwardResponse, FrameFlags.HasHypoIds, 1), ProtocolErrorCode.InvalidFlags, "ForwardResponse");
        ReadFails(Frame(FrameType.InferenceOpen, FrameFlags.None, 0), ProtocolErrorCode.OutOfOrder, "stream 0");
    }

    [Fact]
    public void ContinuationWithoutAStartAndInterleavedFramesAreOutOfOrder()
    {
        ReadFails(Frame(FrameType.Continuation, FrameFlags.None, 5, 1, 2, 3), ProtocolErrorCode.OutOfOrder, "no chunked message");
        var start = Frame(FrameType.ForwardResponse, FrameFlags.More, 5, Concat(BitConverter.GetBytes(2000u), new byte[1020]));
        ReadFails(Concat(start, Frame(FrameType.Ping, FrameFlags.None, 0, new byte[8])), ProtocolErrorCode.OutOfOrder, "was incomplete");
        ReadFails(Concat(start, Frame(FrameType.Continuation, FrameFlags.None, 6, new byte[980])), ProtocolErrorCode.OutOfOrder, "stream 5");
    }

    [Fact]
    public void InconsistentChunkingIsMalformed()
    {
        var start = Frame(FrameType.ForwardResponse, FrameFlags.More, 5, Concat(BitConverter.GetBytes(2000u), new byte[1020]));
        ReadFails(Concat(start, Frame(FrameType.Continuation, FrameFlags.None, 5, new byte[979])), ProtocolErrorCode.MalformedFrame, "980 bytes left");
        ReadFails(Concat(start, Frame(FrameType.Continuation, FrameFlags.More, 5, new byte[980])), ProtocolErrorCode.MalformedFrame, "MORE=True");
        ReadFails(Concat(start, Frame(FrameType.Continuation, FrameFlags.More, 5)), ProtocolErrorCode.MalformedFrame, "0 bytes");
        ReadFails(Frame(FrameType.ForwardResponse, FrameFlags.More, 5, Concat(BitConverter.GetBytes(8193u), new byte[100])), ProtocolErrorCode.MessageTooLarge, "8193");
        ReadFails(Frame(FrameType.ForwardResponse, FrameFlags.More, 5, Concat(BitConverter.GetBytes(10u), new byte[10])), ProtocolErrorCode.MalformedFrame, "totalLength");
        ReadFails(Frame(FrameType.ForwardResponse, FrameFlags.More, 5, 1, 2), ProtocolErrorCode.Truncated, "totalLength");
        ReadFails(start, ProtocolErrorCode.Truncated, "chunked message was incomplete");
    }

    [Fact]
    public void StreamEndingInsideAFrameIsTruncated()
    {
        var ping = Frame(FrameType.Ping, FrameFlags.None, 0, new byte[8]);
        ReadFails(ping[..5], ProtocolErrorCode.Truncated, "5 bytes");
        ReadFails(ping[..15], ProtocolErrorCode.Truncated, "15 bytes");
    }

    [Fact]
    public void PayloadErrorsNameTheFieldAndLeaveTheConnectionUsable()
    {
        var cases = new (byte[] Frame, ProtocolErrorCode Code, string Fragment)[]
        {
            (Frame(FrameType.Ping, FrameFlags.None, 1, new byte[7]), ProtocolErrorCode.Truncated, "'nonce'"),
            (Frame(FrameType.Ping, FrameFlags.None, 1, new byte[9]), ProtocolErrorCode.TrailingBytes, "1 bytes are left"),
            (Frame(FrameType.ForwardResponse, FrameFlags.None, 2, TensorBytes(9, 3, 1, 1, 1)), ProtocolErrorCode.BadDType, "codec 9"),
            (Frame(FrameType.ForwardResponse, FrameFlags.None, 2, TensorBytes(0, 5, 1, 1, 1, 1, 1)), ProtocolErrorCode.BadShape, "rank 5"),
            (Frame(FrameType.ForwardResponse, FrameFlags.None, 2, TensorBytes(0, 3, 1, 0, 1)), ProtocolErrorCode.BadShape, "dimension 1 equal to 0"),
            (Frame(FrameType.ForwardResponse, FrameFlags.None, 2, TensorBytes(0, 3, uint.MaxValue, uint.MaxValue, uint.MaxValue)), ProtocolErrorCode.ShapeOverflow, "8192 bytes"),
            (Frame(FrameType.ForwardResponse, FrameFlags.None, 2, TensorBytes(0, 3, 2, 2, 2)), ProtocolErrorCode.Truncated, "'hidden' needs 32 bytes"),
            (Frame(FrameType.ForwardResponse, FrameFlags.None, 2, Concat(TensorBytes(0, 2, 1, 1), new byte[4])), ProtocolErrorCode.BadShape, "rank 2"),
            (Frame(FrameType.Error, FrameFlags.None, 3, Concat(BitConverter.GetBytes((ushort)65), new byte[65])), ProtocolErrorCode.StringTooLong, "'code' is 65 bytes"),
            (Frame(FrameType.Error, FrameFlags.None, 3, 2, 0, 0xC3, 0x28, 0, 0), ProtocolErrorCode.InvalidUtf8, "'code'"),
            (Frame(FrameType.InferenceOpen, FrameFlags.None, 4, Concat(new byte[16], BitConverter.GetBytes(5u), BitConverter.GetBytes(5u), BitConverter.GetBytes(1u), [0])), ProtocolErrorCode.MalformedFrame, "5:5"),
            (Frame(FrameType.InferenceStep, FrameFlags.HasHypoIds, 4, Concat(new byte[12], TensorBytes(0, 3, 1, 1, 1), new byte[4], BitConverter.GetBytes(9u))), ProtocolErrorCode.MalformedFrame, "limit is 8"),
            (Frame(FrameType.InferenceStep, FrameFlags.HasHypoIds, 4, Concat(new byte[12], TensorBytes(0, 3, 1, 1, 1), new byte[4], BitConverter.GetBytes(3u), new byte[8])), ProtocolErrorCode.Truncated, "declares 3 ids"),
        };

        var ping = Frame(FrameType.Ping, FrameFlags.None, 0, BitConverter.GetBytes(77UL));
        foreach (var (frame, code, fragment) in cases)
        {
            using var reader = new ProtocolReader(ProtocolTestKit.Filled(Concat(frame, ping)), Limits);
            var ex = Assert.Throws<ProtocolException>(() => ProtocolTestKit.ReadNow(reader));
            Assert.Equal(code, ex.Code);
            Assert.Contains(fragment, ex.Message, StringComparison.Ordinal);
            Assert.False(ex.IsConnectionFatal);
            Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(frame.AsSpan(6)), ex.StreamId);

            // Framing is intact: the next frame is read normally.
            var next = ProtocolTestKit.ReadNow(reader);
            Assert.Equal(new PingMessage(77), next!.Value.Message);
        }
    }

    [Fact]
    public async Task AStepRoundTripAllocatesOnlyTheReceivedMessageRecord()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0));
        var writer = new ProtocolWriter(pipe.Writer);
        using var reader = new ProtocolReader(pipe.Reader);
        var values = new float[4096];
        var destination = new float[4096];
        var step = new InferenceStep(1, 0, WireTensor.FromValues(new TensorShape(1, 1, 4096), values, WireCodec.Bf16));
        var before = 0L;
        for (var i = 0; i < 60; i++)
        {
            if (i == 10)
            {
                before = GC.GetAllocatedBytesForCurrentThread();
            }

            writer.Write(1, step);
            await writer.FlushAsync(CancellationToken.None);
            var received = (InferenceStep)(await reader.ReadAsync(CancellationToken.None))!.Value.Message;
            received.Hidden.CopyTo(destination);
        }

        var perStep = (GC.GetAllocatedBytesForCurrentThread() - before) / 50.0;
        Assert.True(perStep <= 256, $"one step through writer, pipe and reader allocated {perStep} bytes on average");
    }
}
