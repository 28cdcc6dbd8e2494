using FsCheck;
using FsCheck.Fluent;

namespace Petals.Discovery.Tests.Announcements;

/// <summary>
/// The announced weight quantization: an optional trailing field after the throughput method's, compatible both ways
/// with records and readers that predate it, and validated like every other field.
/// </summary>
public sealed class ServerInfoQuantizationCodecTests
{
    private static readonly DateTimeOffset Expires = DhtTestKit.Start.AddMinutes(3);

    [Theory]
    [InlineData("none")]
    [InlineData("int8")]
    [InlineData("nf4")]
    [InlineData("q4_k+q6_k")]
    public void The_quantization_round_trips_with_and_without_a_throughput_method(string quantization)
    {
        foreach (var method in new[] { null, "given" })
        {
            var info = ServerInfoCodecTests.Sample() with { ThroughputMethod = method, Quantization = quantization };
            var decoded = ServerInfoCodec.Decode(ServerInfoCodec.Encode(info), "p", Expires);
            Assert.Equal(quantization, decoded.Quantization);
            Assert.Equal(method, decoded.ThroughputMethod);
        }
    }

    [Fact]
    public void Older_readers_see_the_fields_they_know_byte_for_byte_and_older_records_read_as_not_stated()
    {
        // With a method: the record without the quantization, then 1 | length | text.
        var withMethod = ServerInfoCodecTests.Sample() with { ThroughputMethod = "given" };
        var before = ServerInfoCodec.Encode(withMethod);
        var after = ServerInfoCodec.Encode(withMethod with { Quantization = "nf4" });
        Assert.Equal([.. before, 1, 3, (byte)'n', (byte)'f', (byte)'4'], after);

        // Without one: the method's presence byte is written as 0 so that the quantization's place is fixed.
        var plain = ServerInfoCodecTests.Sample();
        var plainBefore = ServerInfoCodec.Encode(plain);
        Assert.Equal([.. plainBefore, 0, 1, 4, (byte)'i', (byte)'n', (byte)'t', (byte)'8'], ServerInfoCodec.Encode(plain with { Quantization = "int8" }));

        // A reader before the method field stops after the rtts; one before the quantization reads a 0 presence byte as "no
        // method" (its check is == 1) and ignores the rest. Records written before the field decode with it null.
        Assert.Null(ServerInfoCodec.Decode(before, "p", Expires).Quantization);
        Assert.Null(ServerInfoCodec.Decode(plainBefore, "p", Expires).Quantization);
        Assert.Null(ServerInfoCodec.Decode([.. plainBefore, 0], "p", Expires).Quantization);

        // Fields a later version appends after the quantization are ignored.
        Assert.Equal("nf4", ServerInfoCodec.Decode([.. after, 9, 9, 9], "p", Expires).Quantization);
    }

    [Theory]
    [InlineData(new byte[] { 1, 0 }, "is empty")]
    [InlineData(new byte[] { 1, 3, (byte)'N', (byte)'F', (byte)'4' }, "'N'")]
    [InlineData(new byte[] { 1, 4, (byte)'q', (byte)'4', (byte)' ', (byte)'k' }, "' '")]
    [InlineData(new byte[] { 1, 65 }, "at most 64")]
    [InlineData(new byte[] { 1, 5, (byte)'n', (byte)'f' }, "truncated")]
    public void A_present_but_malformed_quantization_is_refused_naming_the_field(byte[] trailer, string why)
    {
        var bytes = ServerInfoCodec.Encode(ServerInfoCodecTests.Sample());
        var error = Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode([.. bytes, 0, .. trailer], "p", Expires));
        Assert.StartsWith("quantization", error.Field, StringComparison.Ordinal);
        Assert.Contains(why, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Encoding_and_announcing_refuse_a_quantization_that_could_not_be_read_back()
    {
        foreach (var bad in new[] { "", "NF4", "q4 k", new string('q', AnnouncementLimits.MaxQuantizationBytes + 1), "nf4\n" })
        {
            var info = ServerInfoCodecTests.Sample() with { Quantization = bad };
            var encode = Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(info));
            Assert.Contains("quantization", encode.Message, StringComparison.Ordinal);
            var announce = Assert.Throws<ArgumentException>(() => AnnouncementLimits.CheckAnnouncement("peer", "m", 16, info, TimeSpan.FromMinutes(1)));
            Assert.Contains("quantization", announce.Message, StringComparison.Ordinal);
        }

        Assert.Equal(AnnouncementLimits.MaxQuantizationBytes, ServerInfoCodec.MaxQuantizationBytes);
        var longest = new string('q', AnnouncementLimits.MaxQuantizationBytes);
        Assert.Equal(longest, ServerInfoCodec.Decode(ServerInfoCodec.Encode(ServerInfoCodecTests.Sample() with { Quantization = longest }), "p", Expires).Quantization);
    }

    [Fact]
    public void Any_valid_quantization_round_trips_and_any_other_text_is_refused_by_the_limits()
    {
        const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_+";
        var valid = Gen.Choose(1, AnnouncementLimits.MaxQuantizationBytes)
            .SelectMany(n => Gen.ArrayOf(Gen.Elements(Alphabet.ToCharArray()), n))
            .Select(chars => new string(chars));
        Prop.ForAll(valid.ToArbitrary(), q =>
            AnnouncementLimits.IsValidQuantization(q, out _)
            && ServerInfoCodec.Decode(ServerInfoCodec.Encode(ServerInfoCodecTests.Sample() with { Quantization = q }), "p", Expires).Quantization == q)
            .QuickCheckThrowOnFailure();

        var any = Gen.Choose(0, AnnouncementLimits.MaxQuantizationBytes + 6)
            .SelectMany(n => Gen.ArrayOf(Gen.Elements((Alphabet + "AZ -.\n\0é🦙").ToCharArray()), n))
            .Select(chars => new string(chars));
        Prop.ForAll(any.ToArbitrary(), text =>
        {
            var ok = AnnouncementLimits.IsValidQuantization(text, out var fault);
            var expected = !string.IsNullOrEmpty(text) && text.Length <= AnnouncementLimits.MaxQuantizationBytes && text.All(Alphabet.Contains);
            return ok == expected && (ok ? fault is null : fault is { Length: > 0 });
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Mutated_encodings_with_a_quantization_only_ever_fail_with_format_errors()
    {
        var good = ServerInfoCodec.Encode(ServerInfoCodecTests.Sample() with { Quantization = "q4_k+q6_k" });
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
                    return info.Quantization is null || AnnouncementLimits.IsValidQuantization(info.Quantization, out _);
                }
                catch (DhtFormatException)
                {
                    return true;
                }
            }).QuickCheckThrowOnFailure();
    }
}
