using System.Numerics;
using System.Security.Cryptography;
using FsCheck;
using FsCheck.Fluent;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Identity;

public sealed class NodeIdTests
{
    private static readonly Arbitrary<int> Seeds = Gen.Choose(0, int.MaxValue).ToArbitrary();

    /// <summary>Random ids, biased to share long prefixes so that close ids and equal high words are exercised.</summary>
    private static NodeId BiasedId(Random random, NodeId near)
    {
        var bytes = near.ToByteArray();
        var keep = random.Next(0, NodeId.Size + 1);
        for (var i = keep; i < NodeId.Size; i++)
        {
            bytes[i] = (byte)random.Next(256);
        }

        return NodeId.FromBytes(bytes);
    }

    [Fact]
    public void Comparison_and_xor_match_big_integer_arithmetic()
    {
        Prop.ForAll(Seeds, seed =>
        {
            var random = new Random(seed);
            var a = RandomId(random);
            var b = BiasedId(random, a);
            var c = BiasedId(random, random.Next(2) == 0 ? a : b);
            BigInteger A = ToBigInteger(a), B = ToBigInteger(b), C = ToBigInteger(c);

            Assert.Equal(A.CompareTo(B), Math.Sign(a.CompareTo(b)));
            Assert.Equal(A ^ B, ToBigInteger(a ^ b));
            Assert.Equal(a ^ b, a.DistanceTo(b));
            Assert.Equal((A ^ B).CompareTo(A ^ C), Math.Sign(a.CompareDistance(b, c)));
            Assert.Equal(a == b, A == B);
            Assert.Equal(a < b, A < B);
            Assert.Equal(a >= b, A >= B);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2_000));
    }

    [Fact]
    public void Xor_distance_is_a_metric_and_unidirectional()
    {
        Prop.ForAll(Seeds, seed =>
        {
            var random = new Random(seed);
            var a = RandomId(random);
            var b = BiasedId(random, a);
            var c = BiasedId(random, b);

            Assert.True((a ^ a).IsZero);
            Assert.Equal(a ^ b, b ^ a);
            Assert.Equal(a == b, (a ^ b).IsZero);

            // Triangle inequality, and the XOR identity that makes Kademlia lookups converge from any side.
            Assert.True(ToBigInteger(a ^ c) <= ToBigInteger(a ^ b) + ToBigInteger(b ^ c));
            Assert.Equal(a ^ c, (a ^ b) ^ (b ^ c));

            // Unidirectionality: for a point and a distance there is exactly one id at that distance.
            var distance = RandomId(random);
            Assert.Equal(distance, a.DistanceTo(a ^ distance));
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2_000));
    }

    [Fact]
    public void Bucket_index_is_the_highest_set_bit_of_the_distance()
    {
        Prop.ForAll(Seeds, seed =>
        {
            var random = new Random(seed);
            var a = RandomId(random);
            var b = BiasedId(random, a);
            var distance = ToBigInteger(a ^ b);
            var expected = distance.IsZero ? -1 : (int)(distance.GetBitLength() - 1);
            Assert.Equal(expected, a.BucketIndexOf(b));
            Assert.Equal(expected, b.BucketIndexOf(a));
            Assert.Equal(NodeId.BitLength - 1 - expected, (a ^ b).LeadingZeroCount());
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2_000));
    }

    [Fact]
    public void Random_id_in_bucket_lands_in_that_bucket()
    {
        Prop.ForAll(Seeds, Gen.Choose(0, NodeId.BitLength - 1).ToArbitrary(), (seed, bucket) =>
        {
            var random = new Random(seed);
            var origin = RandomId(random);
            var id = NodeId.CreateRandomInBucket(origin, bucket, random);
            Assert.Equal(bucket, origin.BucketIndexOf(id));
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(1_000));

        Assert.Throws<ArgumentOutOfRangeException>(() => NodeId.CreateRandomInBucket(NodeId.Zero, NodeId.BitLength, new Random(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => NodeId.CreateRandomInBucket(NodeId.Zero, -1, new Random(1)));
    }

    [Fact]
    public void Hex_and_byte_forms_round_trip()
    {
        Prop.ForAll(Seeds, seed =>
        {
            var id = RandomId(new Random(seed));
            var text = id.ToString();
            Assert.Equal(40, text.Length);
            Assert.Equal(Convert.ToHexStringLower(id.ToByteArray()), text);
            Assert.Equal(id, NodeId.Parse(text));
            Assert.Equal(id, NodeId.Parse(text.ToUpperInvariant()));
            Assert.Equal(id, NodeId.FromBytes(id.ToByteArray()));
            Assert.Equal(id.GetHashCode(), NodeId.Parse(text).GetHashCode());
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(500));
    }

    [Theory]
    [InlineData("")]
    [InlineData("00")]
    [InlineData("0123456789abcdef0123456789abcdef0123456")]
    [InlineData("0123456789abcdef0123456789abcdef012345678")]
    [InlineData("0123456789abcdef0123456789abcdef0123456g")]
    [InlineData(" 123456789abcdef0123456789abcdef01234567")]
    public void Parse_rejects_anything_but_forty_hex_digits(string text)
    {
        Assert.False(NodeId.TryParse(text, out _));
        var error = Assert.Throws<FormatException>(() => NodeId.Parse(text));
        Assert.Contains("40 hex digits", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Byte_form_must_be_twenty_bytes()
    {
        var error = Assert.Throws<ArgumentException>(() => NodeId.FromBytes(new byte[19]));
        Assert.Contains("20 bytes, not 19", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => NodeId.Zero.WriteTo(new byte[19]));
    }

    [Fact]
    public void Public_key_id_is_the_sha256_prefix_and_key_ids_are_domain_separated()
    {
        var identity = Identities[0];
        var hash = SHA256.HashData(identity.PublicKey.Span);
        Assert.Equal(NodeId.FromBytes(hash.AsSpan(0, 20)), identity.NodeId);
        Assert.Equal(identity.NodeId, NodeId.FromPublicKey(identity.PublicKey.Span));

        var key = "llama.12";
        var plain = SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key));
        Assert.NotEqual(NodeId.FromBytes(plain.AsSpan(0, 20)), NodeId.FromKey(key));
        Assert.Equal(NodeId.FromKey(key), NodeId.FromKey("llama.12"));
        Assert.NotEqual(NodeId.FromKey(key), NodeId.FromKey("llama.13"));
        Assert.Throws<ArgumentException>(() => NodeId.FromKey(string.Empty));
        Assert.Throws<ArgumentException>(() => NodeId.FromPublicKey([]));
    }

    [Fact]
    public void Distance_comparer_sorts_like_brute_force()
    {
        Prop.ForAll(Seeds, seed =>
        {
            var random = new Random(seed);
            var target = RandomId(random);
            var ids = Enumerable.Range(0, 50).Select(_ => BiasedId(random, target)).ToArray();
            var sorted = ids.OrderBy(id => id, new NodeIdDistanceComparer(target)).ToArray();
            var expected = ids.OrderBy(id => ToBigInteger(id) ^ ToBigInteger(target)).ToArray();
            Assert.Equal(expected, sorted);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(200));
    }
}
