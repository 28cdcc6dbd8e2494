using FsCheck;
using FsCheck.Fluent;

namespace Petals.Discovery.Tests.Announcements;

/// <summary>
/// The announced LoRA adapter names: an optional trailing field after the quantization's, compatible both ways with
/// records and readers that predate it, bounded and validated like every other field.
/// </summary>
public sealed class ServerInfoAdaptersCodecTests
{
    private static readonly DateTimeOffset Expires = DhtTestKit.Start.AddMinutes(3);

    [Theory]
    [InlineData(null, null)]
    [InlineData("given", null)]
    [InlineData(null, "nf4")]
    [InlineData("given", "q4_k+q6_k")]
    public void Adapters_round_trip_in_order_with_and_without_the_earlier_optional_fields(string? method, string? quantization)
    {
        string[] names = ["style", "chat-v2", "rhymes_r8.1"];
        var info = ServerInfoCodecTests.Sample() with { ThroughputMethod = method, Quantization = quantization, Adapters = names };
        var decoded = ServerInfoCodec.Decode(ServerInfoCodec.Encode(info), "p", Expires);
        Assert.Equal(names, decoded.Adapters);
        Assert.Equal(method, decoded.ThroughputMethod);
        Assert.Equal(quantization, decoded.Quantization);
    }

    [Fact]
    public void Records_without_adapters_are_unchanged_and_older_readers_see_the_fields_they_know()
    {
        var plain = ServerInfoCodecTests.Sample();
        var before = ServerInfoCodec.Encode(plain);
        Assert.Equal(before, ServerInfoCodec.Encode(plain with { Adapters = [] }));
        Assert.Empty(ServerInfoCodec.Decode(before, "p", Expires).Adapters);

        // Without a method or quantization, both presence bytes are written as 0 so that the adapters' place is fixed.
        var with = ServerInfoCodec.Encode(plain with { Adapters = ["ab"] });
        Assert.Equal([.. before, 0, 0, 1, 1, 2, (byte)'a', (byte)'b'], with);

        // With a quantization: its field, then the adapters. A reader that predates the adapters reads the quantization and
        // ignores the rest.
        var quantized = plain with { Quantization = "nf4" };
        var quantizedBefore = ServerInfoCodec.Encode(quantized);
        var quantizedWith = ServerInfoCodec.Encode(quantized with { Adapters = ["x", "y"] });
        Assert.Equal([.. quantizedBefore, 1, 2, 1, (byte)'x', 1, (byte)'y'], quantizedWith);
        var decoded = ServerInfoCodec.Decode(quantizedWith, "p", Expires);
        Assert.Equal("nf4", decoded.Quantization);
        Assert.Equal(["x", "y"], decoded.Adapters);

        // Fields a later version appends after the adapters, or in their place with another marker, are ignored.
        Assert.Equal(["ab"], ServerInfoCodec.Decode([.. with, 9, 9, 9], "p", Expires).Adapters);
        Assert.Empty(ServerInfoCodec.Decode([.. before, 0, 0, 7, 1, 2], "p", Expires).Adapters);
    }

    [Theory]
    [InlineData(new byte[] { 1 }, "adapter count", "truncated")]
    [InlineData(new byte[] { 1, 0 }, "adapter count", "1 to 32")]
    [InlineData(new byte[] { 1, 33 }, "adapter count", "1 to 32")]
    [InlineData(new byte[] { 1, 1, 0 }, "adapter 0", "is empty")]
    [InlineData(new byte[] { 1, 1, 3, (byte)'a', (byte)' ', (byte)'b' }, "adapter 0", "' '")]
    [InlineData(new byte[] { 1, 1, 2, (byte)'.', (byte)'a' }, "adapter 0", "'.'")]
    [InlineData(new byte[] { 1, 1, 65 }, "adapter 0 length", "at most 64")]
    [InlineData(new byte[] { 1, 2, 1, (byte)'a', 3, (byte)'b' }, "adapter 1", "truncated")]
    [InlineData(new byte[] { 1, 2, 1, (byte)'a', 1, (byte)'a' }, "adapters", "listed twice")]
    public void A_present_but_malformed_adapter_list_is_refused_naming_the_field(byte[] trailer, string field, string why)
    {
        var bytes = ServerInfoCodec.Encode(ServerInfoCodecTests.Sample());
        var error = Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode([.. bytes, 0, 0, .. trailer], "p", Expires));
        Assert.Equal(field, error.Field);
        Assert.Contains(why, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Encoding_and_announcing_refuse_adapters_that_could_not_be_read_back()
    {
        var tooMany = Enumerable.Range(0, AnnouncementLimits.MaxAdapters + 1).Select(i => "a" + i).ToArray();
        foreach (var bad in new[] { [""], ["a b"], ["-x"], [new string('a', AnnouncementLimits.MaxAdapterNameBytes + 1)], ["é"], ["dup", "dup"], tooMany })
        {
            var info = ServerInfoCodecTests.Sample() with { Adapters = bad };
            var encode = Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(info));
            Assert.Contains("adapter", encode.Message, StringComparison.Ordinal);
            var announce = Assert.Throws<ArgumentException>(() => AnnouncementLimits.CheckAnnouncement("peer", "m", 16, info, TimeSpan.FromMinutes(1)));
            Assert.Contains("adapter", announce.Message, StringComparison.Ordinal);
        }

        var most = Enumerable.Range(0, AnnouncementLimits.MaxAdapters).Select(i => i.ToString("D2", System.Globalization.CultureInfo.InvariantCulture) + new string('n', AnnouncementLimits.MaxAdapterNameBytes - 2)).ToArray();
        Assert.Equal(most, ServerInfoCodec.Decode(ServerInfoCodec.Encode(ServerInfoCodecTests.Sample() with { Adapters = most }), "p", Expires).Adapters);
    }

    [Fact]
    public void Any_valid_adapter_list_round_trips_and_the_name_rule_is_exactly_the_documented_one()
    {
        const string Alphabet = "abcxyzABCXYZ0189_-.";
        var name = Gen.Choose(1, AnnouncementLimits.MaxAdapterNameBytes)
            .SelectMany(n => Gen.ArrayOf(Gen.Elements(Alphabet.ToCharArray()), n))
            .Select(chars => "n" + new string(chars)[1..]);
        var list = Gen.Choose(0, AnnouncementLimits.MaxAdapters).SelectMany(n => Gen.ArrayOf(name, n)).Select(a => a.Distinct().ToArray());
        Prop.ForAll(list.ToArbitrary(), names =>
            ServerInfoCodec.Decode(ServerInfoCodec.Encode(ServerInfoCodecTests.Sample() with { Adapters = names }), "p", Expires).Adapters.SequenceEqual(names))
            .QuickCheckThrowOnFailure();

        var any = Gen.Choose(0, AnnouncementLimits.MaxAdapterNameBytes + 4)
            .SelectMany(n => Gen.ArrayOf(Gen.Elements((Alphabet + " +/\n\0é").ToCharArray()), n))
            .Select(chars => new string(chars));
        Prop.ForAll(any.ToArbitrary(), text =>
        {
            var ok = AnnouncementLimits.IsValidAdapterName(text, out var fault);
            var expected = text.Length is > 0 and <= AnnouncementLimits.MaxAdapterNameBytes && text.All(Alphabet.Contains) && text[0] is not ('.' or '-');
            return ok == expected && (ok ? fault is null : fault is { Length: > 0 });
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Mutated_encodings_with_adapters_only_ever_fail_with_format_errors()
    {
        var good = ServerInfoCodec.Encode(ServerInfoCodecTests.Sample() with { Quantization = "nf4", Adapters = ["style", "chat-v2"] });
        var mutation = Gen.Zip(Gen.Choose(0, good.Length - 1), Gen.Choose(0, 255));
        Prop.ForAll(
            Gen.Zip(Gen.ListOf(mutation), Gen.Choose(0, good.Length)).ToArbitrary(),
            m =>
            {
                var (edits, cut) = m;
                var bytes = (byte[])good.Clone();
                foreach (var (at, value) in edits)
                {
                    bytes[at] = (byte)value;
                }

                try
                {
                    var info = ServerInfoCodec.Decode(bytes.AsSpan(0, cut), "p", Expires);
                    return AnnouncementLimits.IsValidAdapterList(info.Adapters, out _);
                }
                catch (DhtFormatException)
                {
                    return true;
                }
            }).QuickCheckThrowOnFailure();
    }
}
