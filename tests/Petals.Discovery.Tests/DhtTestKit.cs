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

    /// <summary>
    /// A whole signed frame of <paramref name="message"/> as its sender would send it: signed by the test identity
    /// whose key the sender carries (or by <paramref name="signer"/>), with the puzzle solved at the default
    /// difficulty (which satisfies every lower one), stamped <paramref name="at"/> (default <see cref="Start"/>)
    /// unless the message has a timestamp, and bound to <paramref name="boundNonce"/> (for a response).
    /// </summary>
    public static byte[] Frame(DhtMessage message, DateTimeOffset? at = null, PeerIdentity? signer = null, ReadOnlySpan<byte> boundNonce = default, ulong? puzzleNonce = null)
    {
        signer ??= IdentityOf(message.Sender.PublicKey);
        var sender = message.Sender with { PuzzleNonce = puzzleNonce ?? signer.SolvePuzzle(DhtNodeOptions.Default.PuzzleDifficulty) };
        var stamped = message.WithSender(sender);
        if (stamped.TimestampUnixMilliseconds == 0)
        {
            stamped = stamped.WithAuthentication((at ?? Start).ToUnixTimeMilliseconds(), message.Nonce, default, default);
        }

        return DhtMessageCodec.EncodeFrame(stamped, signer, boundNonce);
    }

    /// <summary>The test identity (of <see cref="Identities"/> or the network pool) whose public key is <paramref name="publicKey"/>.</summary>
    public static PeerIdentity IdentityOf(ReadOnlyMemory<byte> publicKey)
    {
        var id = NodeId.FromPublicKey(publicKey.Span);
        return Identities.FirstOrDefault(i => i.NodeId == id)
            ?? Network.DhtTestNetwork.FindPooled(id)
            ?? throw new InvalidOperationException($"No test identity has the key of {id}.");
    }

    public static DhtRecord Signed(PeerIdentity signer, string key, byte[] value, DateTimeOffset expiresAt) =>
        DhtRecord.Create(signer, key, value, expiresAt);
}
