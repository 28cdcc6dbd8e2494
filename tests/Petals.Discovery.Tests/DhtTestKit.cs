using System.Numerics;
using Petals.Transport;

namespace Petals.Discovery.Tests;

/// <summary>Shared identities (key generation is the slow part), random ids and records for the Discovery tests.</summary>
internal static class DhtTestKit
{
    public static readonly DateTimeOffset Start = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static readonly Lazy<PeerIdentity[]> LazyIdentities = new(() => Enumerable.Range(0, 8).Select(_ => PeerIdentity.Generate()).ToArray());

    /// <summary>Eight identities shared by all tests (never disposed: they live as long as the test process).</summary>
    public static PeerIdentity[] Identities => LazyIdentities.Value;

    public static NodeId RandomId(Random random) => NodeId.CreateRandom(random);

    /// <summary>The id read as an unsigned big-endian integer (the reference for comparisons and distances).</summary>
    public static BigInteger ToBigInteger(NodeId id) => new(id.ToByteArray(), isUnsigned: true, isBigEndian: true);

    public static DhtContact Contact(NodeId id) => new(id, PeerAddress.Parse($"mem://{id}"));

    public static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    public static string RandomKey(Random random)
    {
        const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789.-_é🦙";
        var length = random.Next(1, 40);
        var chars = new System.Text.StringBuilder();
        while (chars.Length < length)
        {
            var at = random.Next(Alphabet.Length);
            if (char.IsSurrogate(Alphabet[at]))
            {
                chars.Append("🦙");
            }
            else
            {
                chars.Append(Alphabet[at]);
            }
        }

        return chars.ToString();
    }

    public static DhtRecord Signed(PeerIdentity signer, string key, byte[] value, DateTimeOffset expiresAt) =>
        DhtRecord.Create(signer, key, value, expiresAt);
}
