using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Petals.Models;
using Petals.Tensors;
using Petals.Transport;

namespace Petals.Discovery.Tests.Announcements;

/// <summary>The value encodings of announcements and model index entries: round trips, exact bytes, and hostile input.</summary>
public sealed class ServerInfoCodecTests
{
    private static readonly DateTimeOffset Expires = DhtTestKit.Start.AddMinutes(3);

    internal static ServerInfo Sample(string peerId = "peer") => new()
    {
        PeerId = peerId,
        Address = PeerAddress.Parse("tcp://10.0.0.5:31337"),
        State = ServerState.Online,
        Span = new BlockRange(4, 12),
        Throughput = 123.5,
        CacheTokensLeft = 16384,
        DType = TensorDType.BF16,
        Version = "0.4.0",
        PublicName = "lab 🦙",
        NextServerRtts = new Dictionary<string, TimeSpan> { ["b"] = TimeSpan.FromMilliseconds(2.5), ["a"] = TimeSpan.FromMilliseconds(40) },
    };

    [Fact]
    public void A_full_announcement_round_trips_with_peer_id_and_expiration_from_the_record()
    {
        var info = Sample();
        var decoded = ServerInfoCodec.Decode(ServerInfoCodec.Encode(info), "ab12", Expires);
        Assert.Equal("ab12", decoded.PeerId);
        Assert.Equal(Expires, decoded.ExpiresAt);
        Assert.Equal(info.Address, decoded.Address);
        Assert.Equal(info.State, decoded.State);
        Assert.Equal(info.Span, decoded.Span);
        Assert.Equal(info.Throughput, decoded.Throughput);
        Assert.Equal(info.CacheTokensLeft, decoded.CacheTokensLeft);
        Assert.Equal(info.DType, decoded.DType);
        Assert.Equal(info.Version, decoded.Version);
        Assert.Equal(info.PublicName, decoded.PublicName);
        Assert.Equal(info.NextServerRtts.OrderBy(p => p.Key), decoded.NextServerRtts.OrderBy(p => p.Key));
    }

    [Fact]
    public void The_encoding_is_the_documented_byte_layout()
    {
        var info = new ServerInfo
        {
            PeerId = "p",
            Address = PeerAddress.Parse("mem://s"),
            State = ServerState.Joining,
            Span = new BlockRange(1, 3),
            Throughput = 2.0,
            CacheTokensLeft = 7,
            DType = TensorDType.F16,
            Version = "v",
            NextServerRtts = new Dictionary<string, TimeSpan> { ["x"] = TimeSpan.FromMilliseconds(1.5) },
        };
        var expected = new List<byte> { 1, 1, 1, 0, 0, 0, 3, 0, 0, 0 };
        expected.AddRange(BitConverter.GetBytes(2.0));
        expected.AddRange(BitConverter.GetBytes(7L));
        expected.Add(1);
        expected.AddRange([7, 0, .. "mem://s"u8.ToArray()]);
        expected.AddRange([1, (byte)'v']);
        expected.Add(0); // no public name
        expected.AddRange([1, 1, (byte)'x']);
        expected.AddRange(BitConverter.GetBytes(1.5));
        Assert.Equal(expected.ToArray(), ServerInfoCodec.Encode(info));
        Assert.Null(ServerInfoCodec.Decode(expected.ToArray(), "p", Expires).PublicName);
    }

    [Fact]
    public void Later_versions_may_append_fields_which_version_1_readers_ignore()
    {
        var bytes = ServerInfoCodec.Encode(Sample()).Concat(new byte[] { 9, 9, 9 }).ToArray();
        Assert.Equal(new BlockRange(4, 12), ServerInfoCodec.Decode(bytes, "p", Expires).Span);
    }

    [Fact]
    public void The_throughput_method_is_an_optional_trailing_field_that_round_trips_and_is_null_in_older_records()
    {
        var withMethod = Sample() with { ThroughputMethod = "measured: median of 5x8 steps, spread 3%, busy" };
        var bytes = ServerInfoCodec.Encode(withMethod);
        var older = ServerInfoCodec.Encode(Sample());

        // The version-1 fields are byte for byte those of a record without it; the field only follows them.
        Assert.Equal(older, bytes.AsSpan(0, older.Length).ToArray());
        Assert.Equal(withMethod with { ExpiresAt = Expires, PeerId = "p" }, ServerInfoCodec.Decode(bytes, "p", Expires) with { NextServerRtts = withMethod.NextServerRtts });
        Assert.Equal("measured: median of 5x8 steps, spread 3%, busy", ServerInfoCodec.Decode(bytes, "p", Expires).ThroughputMethod);
        Assert.Null(ServerInfoCodec.Decode(older, "p", Expires).ThroughputMethod);

        // Still later fields after it are ignored; a truncated or unreadable trailer reads as no method, never an error.
        Assert.Equal(withMethod.ThroughputMethod, ServerInfoCodec.Decode([.. bytes, 7, 7], "p", Expires).ThroughputMethod);
        Assert.Null(ServerInfoCodec.Decode(bytes.AsSpan(0, bytes.Length - 3), "p", Expires).ThroughputMethod);
        Assert.Null(ServerInfoCodec.Decode([.. older, 1, 200], "p", Expires).ThroughputMethod);
        Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(Sample() with { ThroughputMethod = new string('m', 129) }));
    }

    [Fact]
    public void Every_truncation_fails_with_a_format_error_naming_a_field()
    {
        var bytes = ServerInfoCodec.Encode(Sample());
        for (var length = 0; length < bytes.Length; length++)
        {
            var e = Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode(bytes.AsSpan(0, length), "p", Expires));
            Assert.False(string.IsNullOrEmpty(e.Field), $"length {length}: {e.Message}");
            Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(0, 2, "version")]
    [InlineData(1, 3, "state")]
    [InlineData(26, 200, "dtype")]
    public void Undefined_enumerations_and_versions_are_refused(int offset, byte value, string field)
    {
        var bytes = ServerInfoCodec.Encode(Sample());
        bytes[offset] = value;
        var e = Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode(bytes, "p", Expires));
        Assert.Equal(field, e.Field);
        Assert.Equal(offset, e.Offset);
    }

    [Fact]
    public void Bad_spans_numbers_addresses_and_text_are_refused_precisely()
    {
        var good = ServerInfoCodec.Encode(Sample());

        var span = (byte[])good.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(span.AsSpan(6), 4); // end == start
        Assert.Equal("span", Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode(span, "p", Expires)).Field);

        var throughput = (byte[])good.Clone();
        BinaryPrimitives.WriteDoubleLittleEndian(throughput.AsSpan(10), double.NaN);
        Assert.Equal("throughput", Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode(throughput, "p", Expires)).Field);

        var cache = (byte[])good.Clone();
        BinaryPrimitives.WriteInt64LittleEndian(cache.AsSpan(18), -1);
        Assert.Equal("cache tokens left", Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode(cache, "p", Expires)).Field);

        var addressLength = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(addressLength.AsSpan(27), 0);
        Assert.Equal("address length", Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode(addressLength, "p", Expires)).Field);

        var address = (byte[])good.Clone();
        address[29] = (byte)'x'; // "xcp://…" is still an address; break the separator instead
        address[32] = (byte)'_';
        Assert.Equal("address", Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode(address, "p", Expires)).Field);

        var utf8 = (byte[])good.Clone();
        var versionAt = 29 + "tcp://10.0.0.5:31337".Length;
        utf8[versionAt + 1] = 0xFF;
        Assert.Contains("not valid UTF-8", Assert.Throws<DhtFormatException>(() => ServerInfoCodec.Decode(utf8, "p", Expires)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Announcements_over_the_limits_are_refused_when_encoding()
    {
        Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(Sample() with { Throughput = double.PositiveInfinity }));
        Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(Sample() with { State = (ServerState)7 }));
        Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(Sample() with { PublicName = new string('n', 129) }));
        Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(Sample() with { Address = default }));
        var many = Enumerable.Range(0, 33).ToDictionary(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture), _ => TimeSpan.FromMilliseconds(1));
        Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(Sample() with { NextServerRtts = many }));
        Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(Sample() with { NextServerRtts = new Dictionary<string, TimeSpan> { ["a"] = TimeSpan.FromMilliseconds(-1) } }));

        // What Encode writes, Decode reads: a round-trip time Decode would refuse is refused when encoding.
        var huge = Assert.Throws<ArgumentException>(() => ServerInfoCodec.Encode(Sample() with { NextServerRtts = new Dictionary<string, TimeSpan> { ["a"] = TimeSpan.MaxValue } }));
        Assert.Contains("round-trip time to a", huge.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => ServerInfoCodec.Encode(Sample() with { CacheTokensLeft = -1 }));
    }

    [Fact]
    public void The_largest_announcement_fits_in_a_record_value()
    {
        var rtts = Enumerable.Range(0, ServerInfoCodec.MaxRtts).ToDictionary(i => new string((char)('a' + (i % 26)), 63) + i.ToString(System.Globalization.CultureInfo.InvariantCulture)[^1], _ => TimeSpan.FromMilliseconds(1));
        var info = Sample() with
        {
            Address = PeerAddress.Parse("tcp://" + new string('h', ServerInfoCodec.MaxAddressBytes - 11) + ":1"),
            Version = new string('v', ServerInfoCodec.MaxTextBytes),
            PublicName = new string('n', ServerInfoCodec.MaxTextBytes),
            ThroughputMethod = new string('m', ServerInfoCodec.MaxTextBytes),
            NextServerRtts = rtts.Take(ServerInfoCodec.MaxRtts).ToDictionary(),
        };
        Assert.InRange(ServerInfoCodec.Encode(info).Length, 1, RecordLimits.Default.MaxValueBytes);
    }

    [Fact]
    public void Model_entries_round_trip_and_bad_ones_are_refused()
    {
        var bytes = ServerInfoCodec.EncodeModelEntry("stories:llama-5x64", 5);
        Assert.Equal(("stories:llama-5x64", 5), ServerInfoCodec.DecodeModelEntry(bytes));
        for (var length = 0; length < bytes.Length; length++)
        {
            Assert.Throws<DhtFormatException>(() => ServerInfoCodec.DecodeModelEntry(bytes.AsSpan(0, length)));
        }

        var zero = (byte[])bytes.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(zero.AsSpan(bytes.Length - 4), 0);
        Assert.Equal("block count", Assert.Throws<DhtFormatException>(() => ServerInfoCodec.DecodeModelEntry(zero)).Field);
        Assert.Throws<ArgumentException>(() => ServerInfoCodec.EncodeModelEntry(new string('m', ServerInfoCodec.MaxModelIdBytes + 1), 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => ServerInfoCodec.EncodeModelEntry("m", 0));
        Assert.Equal(("m", ServerInfoCodec.MaxBlockCount), ServerInfoCodec.DecodeModelEntry(ServerInfoCodec.EncodeModelEntry("m", ServerInfoCodec.MaxBlockCount)));
        Assert.Throws<ArgumentOutOfRangeException>(() => ServerInfoCodec.EncodeModelEntry("m", ServerInfoCodec.MaxBlockCount + 1));
        var huge = (byte[])bytes.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(huge.AsSpan(bytes.Length - 4), ServerInfoCodec.MaxBlockCount + 1);
        var error = Assert.Throws<DhtFormatException>(() => ServerInfoCodec.DecodeModelEntry(huge));
        Assert.Equal("block count", error.Field);
        Assert.Contains("1025", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Mutated_encodings_only_ever_fail_with_format_errors()
    {
        var good = ServerInfoCodec.Encode(Sample());
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
                    return info.Span.End > info.Span.Start && !info.Address.IsEmpty;
                }
                catch (DhtFormatException)
                {
                    return true;
                }
            }).QuickCheckThrowOnFailure();
    }
}
