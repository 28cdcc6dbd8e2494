using System.Buffers;
using FsCheck;
using FsCheck.Fluent;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Records;

/// <summary>Round trips, every truncation, limits, and tens of thousands of mutated inputs through the record codec.</summary>
public sealed class DhtRecordCodecTests
{
    private static readonly RecordLimits Limits = new() { MaxKeyBytes = 64, MaxValueBytes = 512 };
    private const int MaxRecords = 8;

    private static readonly uint[] Interesting = [0, 1, 2, 20, 63, 64, 65, 91, 127, 128, 129, 255, 256, 511, 512, 513, 65535, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF];

    private static DhtRecord RandomRecord(Random random)
    {
        if (random.Next(4) == 0)
        {
            return Signed(Identities[random.Next(Identities.Length)], RandomKey(random), RandomBytes(random, random.Next(0, 100)), Start.AddMinutes(random.Next(1, 100)));
        }

        // The codec does not verify signatures, so arbitrary key and signature bytes exercise it as well.
        return new DhtRecord(
            RandomKey(random),
            RandomId(random),
            RandomBytes(random, random.Next(0, Limits.MaxValueBytes + 1)),
            DateTimeOffset.FromUnixTimeMilliseconds(random.NextInt64(0, 4_000_000_000_000)),
            RandomBytes(random, random.Next(0, DhtRecord.MaxPublicKeyBytes + 1)),
            RandomBytes(random, random.Next(0, DhtRecord.MaxSignatureBytes + 1)));
    }

    private static byte[] EncodeList(IReadOnlyList<DhtRecord> records)
    {
        var writer = new ArrayBufferWriter<byte>();
        DhtRecordCodec.EncodeList(records, writer);
        return writer.WrittenSpan.ToArray();
    }

    private static void AssertSame(DhtRecord expected, DhtRecord actual) => Assert.True(expected.ContentEquals(actual), $"{expected} != {actual}");

    [Fact]
    public void Records_round_trip()
    {
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var record = RandomRecord(random);
            var bytes = DhtRecordCodec.Encode(record);
            Assert.Equal(DhtRecordCodec.GetEncodedLength(record), bytes.Length);
            AssertSame(record, DhtRecordCodec.Decode(bytes, Limits));

            var writer = new ArrayBufferWriter<byte>();
            DhtRecordCodec.Encode(record, writer);
            Assert.Equal(bytes, writer.WrittenSpan.ToArray());

            var list = Enumerable.Range(0, random.Next(0, MaxRecords + 1)).Select(_ => RandomRecord(random)).ToArray();
            var decoded = DhtRecordCodec.DecodeList(EncodeList(list), MaxRecords, Limits);
            Assert.Equal(list.Length, decoded.Count);
            for (var i = 0; i < list.Length; i++)
            {
                AssertSame(list[i], decoded[i]);
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    [Fact]
    public void Decoded_signed_records_still_validate()
    {
        var record = Signed(Identities[0], "llama.0", [1, 2, 3], Start.AddMinutes(5));
        var decoded = DhtRecordCodec.Decode(DhtRecordCodec.Encode(record));
        Assert.True(new RecordValidator().Validate(decoded, Start).IsAccepted);
    }

    [Fact]
    public void Every_truncation_and_any_trailing_byte_is_refused()
    {
        var random = new Random(42);
        for (var r = 0; r < 20; r++)
        {
            var bytes = DhtRecordCodec.Encode(RandomRecord(random));
            for (var length = 0; length < bytes.Length; length++)
            {
                var error = Assert.Throws<DhtFormatException>(() => DhtRecordCodec.Decode(bytes.AsSpan(0, length), Limits));
                Assert.Contains("truncated", error.Message, StringComparison.Ordinal);
            }

            var trailing = Assert.Throws<DhtFormatException>(() => DhtRecordCodec.Decode([.. bytes, 0], Limits));
            Assert.Contains("1 unexpected trailing bytes", trailing.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Limits_are_enforced_before_allocation()
    {
        var record = new DhtRecord("llama.1", NodeId.Zero, new byte[Limits.MaxValueBytes + 1], Start, default, default);
        var bytes = DhtRecordCodec.Encode(record);
        var error = Assert.Throws<DhtFormatException>(() => DhtRecordCodec.Decode(bytes, Limits));
        Assert.Equal("value length", error.Field);
        Assert.Contains("513 bytes; at most 512", error.Message, StringComparison.Ordinal);

        var longKey = DhtRecordCodec.Encode(new DhtRecord(new string('k', 65), NodeId.Zero, default, Start, default, default));
        Assert.Equal("key length", Assert.Throws<DhtFormatException>(() => DhtRecordCodec.Decode(longKey, Limits)).Field);

        var badVersion = DhtRecordCodec.Encode(new DhtRecord("k", NodeId.Zero, default, Start, default, default));
        badVersion[0] = 2;
        Assert.Contains("version 2 is not supported", Assert.Throws<DhtFormatException>(() => DhtRecordCodec.Decode(badVersion)).Message, StringComparison.Ordinal);

        var badUtf8 = DhtRecordCodec.Encode(new DhtRecord("kk", NodeId.Zero, default, Start, default, default));
        badUtf8[3] = 0xFF;
        Assert.Contains("not valid UTF-8", Assert.Throws<DhtFormatException>(() => DhtRecordCodec.Decode(badUtf8)).Message, StringComparison.Ordinal);

        var negative = DhtRecordCodec.Encode(new DhtRecord("k", NodeId.Zero, default, Start, default, default));
        BitConverter.GetBytes(-5L).CopyTo(negative, 1 + 2 + 1 + NodeId.Size);
        Assert.Equal("expiration", Assert.Throws<DhtFormatException>(() => DhtRecordCodec.Decode(negative)).Field);

        // A list count far beyond what the bytes can hold is refused up front.
        var list = EncodeList([record]);
        list[0] = 0xFF;
        list[1] = 0xFF;
        Assert.Contains("at most 8", Assert.Throws<DhtFormatException>(() => DhtRecordCodec.DecodeList(list, MaxRecords, Limits)).Message, StringComparison.Ordinal);
        Assert.Contains("cannot fit", Assert.Throws<DhtFormatException>(() => DhtRecordCodec.DecodeList(list, 100_000, Limits)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Encoding_checks_its_destination_and_list_size()
    {
        var record = new DhtRecord("k", NodeId.Zero, new byte[] { 1 }, Start, default, default);
        var length = DhtRecordCodec.GetEncodedLength(record);
        Assert.Equal(DhtRecordCodec.FixedSize + 2, length);
        Assert.Throws<ArgumentException>(() => DhtRecordCodec.Encode(record, new byte[length - 1]));
        Assert.Equal(length, DhtRecordCodec.Encode(record, new byte[length + 5]));
        Assert.Throws<ArgumentException>(() => DhtRecordCodec.EncodeList(Enumerable.Repeat(record, ushort.MaxValue + 1).ToArray(), new ArrayBufferWriter<byte>()));

        // Decoding with a consumed count reads one record off the front of a longer buffer.
        var two = new byte[2 * length];
        DhtRecordCodec.Encode(record, two);
        DhtRecordCodec.Encode(record, two.AsSpan(length));
        AssertSame(record, DhtRecordCodec.Decode(two, Limits, out var consumed));
        Assert.Equal(length, consumed);
    }

    [Fact]
    public void Mutated_inputs_fail_only_with_format_errors_and_bounded_allocation()
    {
        long worst = 0;
        var budget = (MaxRecords * (Limits.MaxValueBytes + Limits.MaxKeyBytes * 4 + DhtRecord.MaxPublicKeyBytes + DhtRecord.MaxSignatureBytes + 512)) + (16 * 1024);
        var decoded = 0;
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var asList = random.Next(2) == 0;
            var original = asList
                ? EncodeList(Enumerable.Range(0, random.Next(0, 4)).Select(_ => RandomRecord(random)).ToArray())
                : DhtRecordCodec.Encode(RandomRecord(random));
            var bytes = Mutate(random, original);

            var before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                if (asList)
                {
                    var records = DhtRecordCodec.DecodeList(bytes, MaxRecords, Limits);
                    worst = Math.Max(worst, GC.GetAllocatedBytesForCurrentThread() - before - (2L * bytes.Length));

                    // Whatever decodes is canonical: it re-encodes to the same bytes.
                    Assert.Equal(bytes, EncodeList(records));
                }
                else
                {
                    var record = DhtRecordCodec.Decode(bytes, Limits);
                    worst = Math.Max(worst, GC.GetAllocatedBytesForCurrentThread() - before - (2L * bytes.Length));
                    Assert.Equal(bytes, DhtRecordCodec.Encode(record));
                }

                decoded++;
            }
            catch (DhtFormatException e)
            {
                worst = Math.Max(worst, GC.GetAllocatedBytesForCurrentThread() - before - (2L * bytes.Length));
                Assert.False(string.IsNullOrEmpty(e.Message));
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(30_000));

        Assert.True(worst <= budget, $"A decode allocated {worst} bytes beyond the input; budget {budget}.");
        Assert.True(decoded > 0, "No mutated input decoded; the mutations are too destructive to exercise the success path.");
    }

    private static byte[] Mutate(Random random, byte[] original)
    {
        var bytes = new List<byte>(original);
        var mutations = random.Next(1, 6);
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
                    bytes.InsertRange(at, RandomBytes(random, random.Next(1, 16)));
                    break;
                case 3:
                    bytes.RemoveRange(at, Math.Min(bytes.Count - at, random.Next(1, 32)));
                    break;
                case 4:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case 5:
                    // Identical in size: a value byte changed, so such inputs still decode.
                    bytes[bytes.Count - 1 - (at % Math.Min(bytes.Count, 8))] ^= 1;
                    break;
                default:
                    var value = BitConverter.GetBytes(Interesting[random.Next(Interesting.Length)]);
                    var width = random.Next(2) == 0 ? 2 : 4;
                    for (var i = 0; i < width && at + i < bytes.Count; i++)
                    {
                        bytes[at + i] = value[i];
                    }

                    break;
            }
        }

        return [.. bytes];
    }
}
