using FsCheck;
using FsCheck.Fluent;
using Petals.Protocol;

namespace Petals.Tests.Protocol;

/// <summary>
/// Random and mutated byte streams through the frame reader: only <see cref="ProtocolException"/> may escape, every
/// read completes without waiting (the writer is complete, so a wait would be a hang), and no read allocates more than
/// the configured message size plus a small constant.
/// </summary>
[Collection(ProtocolTestGroup.Name)]
public sealed class ProtocolFuzzTests
{
    private static readonly ProtocolLimits Limits = new() { MaxFrameSize = 1024, MaxMessageSize = 4096, MaxStringBytes = 64, MaxHypoIds = 16 };

    // Corpus messages may carry strings up to 1 KiB so that the reader's 64-byte string limit is exercised too.
    private static readonly ProtocolLimits CorpusLimits = Limits with { MaxStringBytes = 1024, MaxHypoIds = 4096 };

    private static readonly uint[] Interesting = [0, 1, 2, 3, 4, 9, 10, 11, 255, 256, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF];

    /// <summary>Per-read allocation budget: one reassembly buffer, one frame copy, and exceptions, records and strings.</summary>
    private static readonly long ReadBudget = Limits.MaxMessageSize + Limits.MaxFrameSize + (16 * 1024);

    private static readonly float[] Sink = new float[1024];

    private static long _worstRead;

    private static byte[] ValidStream(Random random)
    {
        var messages = new (uint, ProtocolMessage)[random.Next(1, 4)];
        for (var i = 0; i < messages.Length; i++)
        {
            messages[i] = ((uint)random.Next(1, 50), ProtocolTestKit.RandomMessage(random, 400));
        }

        return ProtocolTestKit.Encode(CorpusLimits, messages);
    }

    private static byte[] Mutate(Random random, byte[] original)
    {
        var bytes = new List<byte>(original);
        var mutations = random.Next(1, 9);
        for (var m = 0; m < mutations && bytes.Count > 0; m++)
        {
            var at = random.Next(bytes.Count);
            switch (random.Next(8))
            {
                case 0:
                    bytes[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    bytes[at] = (byte)random.Next(256);
                    break;
                case 2:
                    var insert = new byte[random.Next(1, 16)];
                    random.NextBytes(insert);
                    bytes.InsertRange(at, insert);
                    break;
                case 3:
                    bytes.RemoveRange(at, Math.Min(bytes.Count - at, random.Next(1, 32)));
                    break;
                case 4:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case 5:
                    var length = Math.Min(bytes.Count - at, random.Next(1, 64));
                    bytes.InsertRange(random.Next(bytes.Count), bytes.GetRange(at, length));
                    break;
                default:
                    // Lengths, counts and dimensions are u32: plant boundary values where fields may lie.
                    var value = BitConverter.GetBytes(Interesting[random.Next(Interesting.Length)]);
                    for (var i = 0; i < 4 && at + i < bytes.Count; i++)
                    {
                        bytes[at + i] = value[i];
                    }

                    break;
            }
        }

        return [.. bytes];
    }

    private static byte[] RandomFrames(Random random)
    {
        var bytes = new List<byte>();
        var frames = random.Next(1, 5);
        for (var f = 0; f < frames; f++)
        {
            var length = random.Next(5) == 0 ? (int)Interesting[random.Next(Interesting.Length)] & 0x7FFFFFFF : random.Next(0, 200);
            var type = random.Next(6) == 0 ? (byte)random.Next(256) : (byte)random.Next(1, 16);
            var flags = (byte)(random.Next(3) == 0 ? random.Next(256) : random.Next(8));
            var header = new byte[FrameHeader.Size];
            BitConverter.GetBytes((uint)length).CopyTo(header, 0);
            header[4] = type;
            header[5] = flags;
            BitConverter.GetBytes((uint)random.Next(0, 4)).CopyTo(header, 6);
            bytes.AddRange(header);
            var payload = new byte[Math.Min(length, 2048) + random.Next(-2, 3) is var n && n > 0 ? n : 0];
            random.NextBytes(payload);
            if (payload.Length >= 4 && random.Next(2) == 0)
            {
                BitConverter.GetBytes(Interesting[random.Next(Interesting.Length)]).CopyTo(payload, 0);
            }

            bytes.AddRange(payload);
        }

        return [.. bytes];
    }

    /// <summary>Reads until the end or a fatal error; returns the number of messages read.</summary>
    private static int ReadAll(byte[] bytes)
    {
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), Limits);
        var messages = 0;

        // Every successful or failed read consumes at least one 10-byte header, so this bound is never reached.
        for (var reads = 0; reads <= (bytes.Length / FrameHeader.Size) + 1; reads++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
#pragma warning disable CA2012 // Completion is asserted before the result is taken; AsTask would allocate.
                var task = reader.ReadAsync(CancellationToken.None);
                Assert.True(task.IsCompleted, "The reader waited for data although the writer was complete: a hang.");
                var received = task.GetAwaiter().GetResult();
#pragma warning restore CA2012
                if (received is null)
                {
                    return messages;
                }

                messages++;
                if (received.Value.Message is InferenceStep { Hidden: var hidden })
                {
                    // Decoding into the caller's buffer must work on whatever passed validation.
                    if (hidden.Shape.ElementCount <= Sink.Length)
                    {
                        hidden.CopyTo(Sink);
                    }
                }
            }
            catch (ProtocolException ex)
            {
                Assert.False(string.IsNullOrEmpty(ex.Code.Value));
                if (ex.IsConnectionFatal)
                {
                    return messages;
                }
            }
            finally
            {
                var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                _worstRead = Math.Max(_worstRead, allocated);
                Assert.True(allocated <= ReadBudget, $"One read allocated {allocated} bytes; the budget is {ReadBudget}.");
            }
        }

        Assert.Fail("The reader kept returning messages past the bytes available.");
        return messages;
    }

    [Fact]
    public void ValidStreamsReadCompletely() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var bytes = ValidStream(random);
            using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), CorpusLimits);
            var count = 0;
            while (ProtocolTestKit.ReadNow(reader) is not null)
            {
                count++;
            }

            Assert.InRange(count, 1, 3);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));

    [Fact]
    public void MutatedFramesOnlyRaiseProtocolErrors()
    {
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            ReadAll(Mutate(random, ValidStream(random)));
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(20_000));

        // The budget is a bound, not a target: the worst read seen is far below it (about 8 KB here).
        Assert.InRange(_worstRead, 1, ReadBudget);
    }

    [Fact]
    public void RandomFramesOnlyRaiseProtocolErrors() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed => ReadAll(RandomFrames(new Random(seed))))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(10_000));

    [Fact]
    public void RandomBytesOnlyRaiseProtocolErrors() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), Gen.Choose(0, 300).ToArbitrary(), (seed, length) =>
        {
            var bytes = new byte[length];
            new Random(seed).NextBytes(bytes);
            ReadAll(bytes);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(10_000));

    [Fact]
    public void MutationsReachDeepValidation()
    {
        // Guards the fuzzer itself: mutated valid streams must hit payload-level errors, not only header errors.
        var codes = new HashSet<string>(StringComparer.Ordinal);
        var random = new Random(12345);
        for (var i = 0; i < 3000; i++)
        {
            using var reader = new ProtocolReader(ProtocolTestKit.Filled(Mutate(random, ValidStream(random))), Limits);
            try
            {
                while (ProtocolTestKit.ReadNow(reader) is not null)
                {
                }
            }
            catch (ProtocolException ex)
            {
                codes.Add(ex.Code.Value);
            }
        }

        foreach (var expected in new[] { "truncated", "trailing_bytes", "bad_dtype", "bad_shape", "frame_too_large", "unknown_frame_type", "out_of_order", "malformed_frame", "invalid_flags" })
        {
            Assert.Contains(expected, codes);
        }
    }
}
