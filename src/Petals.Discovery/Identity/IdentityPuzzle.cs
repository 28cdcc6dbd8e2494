using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Petals.Discovery;

/// <summary>
/// The static crypto puzzle that makes DHT identities cost work to create (after S/Kademlia): a nonce solves the
/// puzzle for a public key at difficulty <c>c</c> when SHA-256 over the ASCII prefix <c>"petals-dht-puzzle-v1\0"</c>,
/// the key's DER SubjectPublicKeyInfo and the nonce (u64 little-endian) starts with at least <c>c</c> zero bits.
/// Solving takes about 2^c hashes; checking takes one. The proof travels beside the key in every DHT message, so the
/// node id (the hash of the key) is unchanged. Thread-safe.
/// </summary>
internal static class IdentityPuzzle
{
    /// <summary>The largest difficulty accepted (a solution would take about 2^40 hashes).</summary>
    public const int MaxDifficulty = 40;

    private static readonly byte[] Domain = "petals-dht-puzzle-v1\0"u8.ToArray();

    /// <summary>Whether <paramref name="nonce"/> solves the puzzle for <paramref name="subjectPublicKeyInfo"/> at <paramref name="difficulty"/>.</summary>
    /// <param name="subjectPublicKeyInfo">The DER public key.</param>
    /// <param name="nonce">The claimed solution.</param>
    /// <param name="difficulty">The leading zero bits required (0 accepts anything).</param>
    public static bool IsSolved(ReadOnlySpan<byte> subjectPublicKeyInfo, ulong nonce, int difficulty)
    {
        if (difficulty <= 0)
        {
            return true;
        }

        Span<byte> input = stackalloc byte[Domain.Length + DhtRecord.MaxPublicKeyBytes + 8];
        if (subjectPublicKeyInfo.Length > DhtRecord.MaxPublicKeyBytes)
        {
            return false;
        }

        var length = Prepare(input, subjectPublicKeyInfo);
        return LeadingZeroBits(input[..length], nonce) >= difficulty;
    }

    /// <summary>The smallest nonce that solves the puzzle for <paramref name="subjectPublicKeyInfo"/> at <paramref name="difficulty"/> (deterministic).</summary>
    /// <param name="subjectPublicKeyInfo">The DER public key.</param>
    /// <param name="difficulty">The leading zero bits required, 0 to <see cref="MaxDifficulty"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">The difficulty is out of range or the key is too long.</exception>
    public static ulong Solve(ReadOnlySpan<byte> subjectPublicKeyInfo, int difficulty)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(difficulty);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(difficulty, MaxDifficulty);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(subjectPublicKeyInfo.Length, DhtRecord.MaxPublicKeyBytes, nameof(subjectPublicKeyInfo));
        if (difficulty == 0)
        {
            return 0;
        }

        Span<byte> input = stackalloc byte[Domain.Length + DhtRecord.MaxPublicKeyBytes + 8];
        var length = Prepare(input, subjectPublicKeyInfo);
        for (ulong nonce = 0; ; nonce++)
        {
            if (LeadingZeroBits(input[..length], nonce) >= difficulty)
            {
                return nonce;
            }
        }
    }

    private static int Prepare(Span<byte> input, ReadOnlySpan<byte> key)
    {
        Domain.CopyTo(input);
        key.CopyTo(input[Domain.Length..]);
        return Domain.Length + key.Length + 8;
    }

    // Writes the nonce into the last 8 bytes of `input` and counts the leading zero bits of its SHA-256.
    private static int LeadingZeroBits(Span<byte> input, ulong nonce)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(input[^8..], nonce);
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(input, hash);
        var high = BinaryPrimitives.ReadUInt64BigEndian(hash);
        return high == 0 ? 64 + (int)ulong.LeadingZeroCount(BinaryPrimitives.ReadUInt64BigEndian(hash[8..])) : (int)ulong.LeadingZeroCount(high);
    }
}
