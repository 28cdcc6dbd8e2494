using System.Buffers;
using System.IO.Pipelines;
using Petals.Models;
using Petals.Protocol;
using Petals.Tensors;

namespace Petals.Tests.Protocol;

/// <summary>In-memory connections and random messages for the protocol tests.</summary>
internal static class ProtocolTestKit
{
    public sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>Two connected ends of an in-memory connection.</summary>
    public static (Duplex Left, Duplex Right) CreatePair()
    {
        var a = new Pipe();
        var b = new Pipe();
        return (new Duplex(a.Reader, b.Writer), new Duplex(b.Reader, a.Writer));
    }

    /// <summary>Writes the messages through a <see cref="ProtocolWriter"/> and returns the raw bytes.</summary>
    public static byte[] Encode(ProtocolLimits limits, params (uint Stream, ProtocolMessage Message)[] messages)
    {
        var stream = new MemoryStream();
        var pipeWriter = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
        var writer = new ProtocolWriter(pipeWriter, limits);
        foreach (var (id, message) in messages)
        {
            writer.Write(id, message);
        }

        writer.FlushAsync().AsTask().GetAwaiter().GetResult();
        pipeWriter.Complete();
        return stream.ToArray();
    }

    /// <summary>A pipe holding <paramref name="bytes"/>, its writer completed.</summary>
    public static PipeReader Filled(ReadOnlySpan<byte> bytes)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0));
        pipe.Writer.Write(bytes);
        pipe.Writer.FlushAsync().AsTask().GetAwaiter().GetResult();
        pipe.Writer.Complete();
        return pipe.Reader;
    }

    /// <summary>Reads a message that must be available without waiting.</summary>
    public static ReceivedMessage? ReadNow(ProtocolReader reader)
    {
#pragma warning disable CA2012 // Completion is asserted before the result is taken; AsTask would allocate inside allocation measurements.
        var task = reader.ReadAsync(TestContext.Current.CancellationToken);
        Assert.True(task.IsCompleted, "The reader waited for data although everything was buffered and the writer was complete.");
        return task.GetAwaiter().GetResult();
#pragma warning restore CA2012
    }

    public static WireTensor RandomTensor(Random random, int rank, int maxElements, WireCodec? codec = null)
    {
        Span<int> dims = stackalloc int[rank];
        var remaining = maxElements;
        for (var i = 0; i < rank; i++)
        {
            dims[i] = random.Next(1, Math.Max(2, (int)Math.Pow(remaining, 1.0 / (rank - i)) + 1));
            remaining = Math.Max(1, remaining / dims[i]);
        }

        var shape = new TensorShape(dims);
        var values = new float[shape.ElementCount];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = random.Next(8) == 0
                ? BitConverter.Int32BitsToSingle(random.Next(int.MinValue, int.MaxValue))
                : (float)((random.NextDouble() - 0.5) * 8);
        }

        return WireTensor.FromValues(shape, values, codec ?? (WireCodec)random.Next(4));
    }

    public static string RandomString(Random random, int maxChars)
    {
        var chars = new char[random.Next(0, maxChars + 1)];
        for (var i = 0; i < chars.Length; i++)
        {
            chars[i] = random.Next(4) switch
            {
                0 => (char)random.Next(0x20, 0x7F),
                1 => (char)random.Next(0xA0, 0x800),
                2 => (char)random.Next(0x800, 0xD7FF),
                _ => (char)random.Next('a', 'z' + 1),
            };
        }

        return new string(chars);
    }

    public static BlockRange RandomBlocks(Random random)
    {
        var start = random.Next(0, 200);
        return new BlockRange(start, start + random.Next(1, 100));
    }

    /// <summary>One random message of any type; tensors up to <paramref name="maxElements"/> elements.</summary>
    public static ProtocolMessage RandomMessage(Random random, int maxElements)
    {
        switch (random.Next(11))
        {
            case 0:
                return InfoRequest.Instance;
            case 1:
                return new InfoResponse(
                    (ushort)random.Next(ushort.MaxValue + 1),
                    (ushort)random.Next(ushort.MaxValue + 1),
                    RandomString(random, 60),
                    RandomBlocks(random),
                    random.Next(),
                    (TensorDType)random.Next(7),
                    (WireCodecs)random.Next(16),
                    (ulong)random.NextInt64(),
                    random.Next(),
                    random.Next(),
                    random.Next(),
                    random.Next())
                {
                    // Protocol 1.1's optional stated error bound, present or not, and 1.2's quantization after it.
                    StatedError = random.Next(2) == 0 ? null : (float)random.NextDouble(),
                } is var info && info.StatedError is not null && random.Next(2) == 0
                    ? info with { Quantization = new[] { "none", "int8", "nf4", "q8_0", "q4_k+q6_k" }[random.Next(5)] }
                    : info;
            case 2:
                return new PingMessage((ulong)random.NextInt64() ^ ((ulong)random.Next(2) << 63));
            case 3:
                return new PongMessage((ulong)random.NextInt64());
            case 4:
                return new ForwardRequest(
                    RandomBlocks(random),
                    (WireCodec)random.Next(4),
                    RandomTensor(random, 3, maxElements),
                    random.Next(2) == 0 ? null : RandomTensor(random, 4, maxElements));
            case 5:
                return new ForwardResponse(RandomTensor(random, 3, maxElements));
            case 6:
                return new InferenceOpen(Guid.NewGuid(), RandomBlocks(random), random.Next(1, int.MaxValue), (WireCodec)random.Next(4));
            case 7:
            {
                ReadOnlyMemory<int>? hypo = null;
                if (random.Next(2) == 0)
                {
                    var ids = new int[random.Next(0, 20)];
                    for (var i = 0; i < ids.Length; i++)
                    {
                        ids[i] = random.Next(-3, 40);
                    }

                    hypo = ids;
                }

                return new InferenceStep(
                    (ulong)random.NextInt64(),
                    random.Next(),
                    RandomTensor(random, 3, maxElements),
                    random.Next(2) == 0 ? null : RandomTensor(random, 4, maxElements),
                    hypo);
            }

            case 8:
                return new InferenceStepResult((ulong)random.NextInt64(), random.Next(), RandomTensor(random, 3, maxElements));
            case 9:
                return InferenceClose.Instance;
            default:
                return new ErrorMessage(new ProtocolErrorCode(random.Next(2) == 0 ? "bad_position" : "x" + RandomString(random, 20)), RandomString(random, 200));
        }
    }
}
