using System.IO.Pipelines;
using FsCheck;
using FsCheck.Fluent;
using Petals.Models;
using Petals.Protocol;

namespace Petals.Tests.Protocol;

[Collection(ProtocolTestGroup.Name)]
public sealed class MessageRoundTripTests
{
    private static readonly ProtocolLimits SmallFrames = new() { MaxFrameSize = ProtocolLimits.MinFrameSize, MaxMessageSize = 1 << 20 };

    private static void AssertRoundTrip(ProtocolLimits limits, (uint Stream, ProtocolMessage Message)[] sent)
    {
        var bytes = ProtocolTestKit.Encode(limits, sent);
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), limits);
        foreach (var (stream, message) in sent)
        {
            var received = ProtocolTestKit.ReadNow(reader);
            Assert.NotNull(received);
            Assert.Equal(stream, received.Value.StreamId);
            Assert.Equal(message.Type, received.Value.Message.Type);
            Assert.Equal(message, received.Value.Message);
        }

        Assert.Null(ProtocolTestKit.ReadNow(reader));
    }

    [Fact]
    public void EveryMessageRoundTripsInOneFrame() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var sent = new (uint, ProtocolMessage)[random.Next(1, 6)];
            for (var i = 0; i < sent.Length; i++)
            {
                var message = ProtocolTestKit.RandomMessage(random, 64);
                var stream = message.Type is FrameType.Ping or FrameType.Pong or FrameType.Error && random.Next(2) == 0 ? 0u : (uint)random.Next(1, int.MaxValue);
                sent[i] = (stream, message);
            }

            AssertRoundTrip(ProtocolLimits.Default, sent);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(500));

    [Fact]
    public void LargeMessagesAreChunkedAndReassembled() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var sent = new (uint, ProtocolMessage)[random.Next(1, 4)];
            for (var i = 0; i < sent.Length; i++)
            {
                sent[i] = ((uint)random.Next(1, 1000), ProtocolTestKit.RandomMessage(random, 3000));
            }

            AssertRoundTrip(SmallFrames, sent);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(200));

    [Fact]
    public void ChunkedTensorUsesContinuationFramesWithinTheFrameLimit()
    {
        var values = Enumerable.Range(0, 3 * 1000).Select(i => (float)Math.Sin(i)).ToArray();
        var step = new InferenceStep(5, 17, WireTensor.FromValues(new TensorShape(1, 3, 1000), values));
        var bytes = ProtocolTestKit.Encode(SmallFrames, (9, step));

        // Walk the frames: the first carries MORE and the total; continuations follow, each within the limit.
        var offset = 0;
        var frames = new List<(int Length, FrameType Type, FrameFlags Flags)>();
        while (offset < bytes.Length)
        {
            var length = BitConverter.ToInt32(bytes, offset);
            frames.Add((length, (FrameType)bytes[offset + 4], (FrameFlags)bytes[offset + 5]));
            Assert.Equal(9u, BitConverter.ToUInt32(bytes, offset + 6));
            Assert.InRange(length, 1, SmallFrames.MaxFrameSize);
            offset += FrameHeader.Size + length;
        }

        Assert.Equal(bytes.Length, offset);
        var payload = 8 + 4 + 2 + 12 + (3000 * 4);
        Assert.Equal((payload + 4 + 1023) / 1024, frames.Count);
        Assert.Equal((FrameType.InferenceStep, FrameFlags.More), (frames[0].Type, frames[0].Flags));
        Assert.All(frames.Skip(1).SkipLast(1), f => Assert.Equal((FrameType.Continuation, FrameFlags.More), (f.Type, f.Flags)));
        Assert.Equal((FrameType.Continuation, FrameFlags.None), (frames[^1].Type, frames[^1].Flags));
        Assert.Equal(payload, BitConverter.ToInt32(bytes, FrameHeader.Size));

        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), SmallFrames);
        var received = Assert.IsType<InferenceStep>(ProtocolTestKit.ReadNow(reader)!.Value.Message);
        var decoded = new float[3000];
        received.Hidden.CopyTo(decoded);
        Assert.Equal(values, decoded);
    }

    [Theory]
    [InlineData(WireCodec.Fp32, 4)]
    [InlineData(WireCodec.Fp16, 2)]
    [InlineData(WireCodec.Bf16, 2)]
    public void OneTokenStepCostsAtMost64BytesBesidesTheHiddenState(WireCodec codec, int bytesPerElement)
    {
        const int Hidden = 8192;
        var limits = ProtocolLimits.Default;
        var values = new float[Hidden];
        var step = new InferenceStep(123456789, 4000, WireTensor.FromValues(new TensorShape(1, 1, Hidden), values, codec));
        var result = new InferenceStepResult(123456789, 4001, WireTensor.FromValues(new TensorShape(1, 1, Hidden), values, codec));
        var stepBytes = ProtocolTestKit.Encode(limits, (7, step)).Length;
        var resultBytes = ProtocolTestKit.Encode(limits, (7, result)).Length;
        var overheadStep = stepBytes - (Hidden * bytesPerElement);
        var overheadResult = resultBytes - (Hidden * bytesPerElement);
        Assert.Equal(36, overheadStep);
        Assert.Equal(36, overheadResult);
        Assert.True(overheadStep <= 64, $"step overhead {overheadStep} bytes");
        Assert.Equal(stepBytes, new ProtocolWriter(new Pipe().Writer, limits).GetWireSize(step));
    }

    [Fact]
    public async Task WritingAStepAllocatesNothing()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0));
        var writer = new ProtocolWriter(pipe.Writer);
        var values = new float[4096];
        var step = new InferenceStep(1, 0, WireTensor.FromValues(new TensorShape(1, 1, 4096), values, WireCodec.Bf16));
        for (var warm = 0; warm < 3; warm++)
        {
            writer.Write(1, step);
            await writer.FlushAsync(TestContext.Current.CancellationToken);
            Drain(pipe.Reader);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            writer.Write(1, step);
            await writer.FlushAsync(TestContext.Current.CancellationToken);
            Drain(pipe.Reader);
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"writing, flushing and consuming 100 steps allocated {allocated} bytes");
    }

    private static void Drain(PipeReader reader)
    {
        if (reader.TryRead(out var result))
        {
            reader.AdvanceTo(result.Buffer.End);
        }
    }

    [Fact]
    public void ReceivedTensorsDecodeStraightIntoTheCallersBuffer()
    {
        var values = new float[] { 1, -2, 3.5f, 1e-3f, 65504, -0.0f };
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, (3, new ForwardResponse(WireTensor.FromValues(new TensorShape(1, 2, 3), values, WireCodec.Fp16))));
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes));
        var response = Assert.IsType<ForwardResponse>(ProtocolTestKit.ReadNow(reader)!.Value.Message);
        Assert.True(response.Hidden.IsEncoded);
        Assert.Equal(new TensorShape(1, 2, 3), response.Hidden.Shape);
        var destination = new float[8];
        var before = GC.GetAllocatedBytesForCurrentThread();
        response.Hidden.CopyTo(destination);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(values.Select(v => (float)(Half)v), destination.Take(6));
    }

    [Fact]
    public void WriterRefusesInvalidMessages()
    {
        var writer = new ProtocolWriter(new Pipe().Writer, new ProtocolLimits { MaxStringBytes = 16, MaxHypoIds = 2 });
        Assert.Throws<ArgumentException>(() => writer.Write(1, new ErrorMessage(ProtocolErrorCode.Busy, new string('x', 17))));
        Assert.Throws<ArgumentException>(() => writer.Write(0, InfoRequest.Instance));
        var hidden = WireTensor.FromValues(new TensorShape(1, 1, 1), new float[1]);
        Assert.Throws<ArgumentException>(() => writer.Write(1, new InferenceStep(1, 0, hidden, HypoIds: new[] { 0, 1, 2 })));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Write(1, new InferenceOpen(Guid.Empty, new BlockRange(0, 1), 0, WireCodec.Fp32)));
        var big = new ProtocolWriter(new Pipe().Writer, new ProtocolLimits { MaxFrameSize = 1024, MaxMessageSize = 4096 });
        var ex = Assert.Throws<ProtocolException>(() => big.Write(1, new ForwardResponse(WireTensor.FromValues(new TensorShape(1, 1, 2000), new float[2000]))));
        Assert.Equal(ProtocolErrorCode.MessageTooLarge, ex.Code);

        // A payload no message could hold is refused when the tensor is built (its size would overflow int).
        var huge = new TensorShape(1, 40_000, 16_384);
        var refused = Assert.Throws<ArgumentException>(() => WireTensor.FromValues(huge, new float[1], WireCodec.Fp32));
        Assert.Contains("more than any message can hold", refused.Message, StringComparison.Ordinal);
    }
}
