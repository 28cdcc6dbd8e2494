using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Numerics;
using System.Security.Cryptography;
using System.Text;

namespace Petals.Discovery;

/// <summary>
/// A 160-bit Kademlia identifier: a node's id (the first 20 bytes of SHA-256 over its public key's
/// SubjectPublicKeyInfo) or the location of a DHT key (the first 20 bytes of SHA-256 over a domain prefix and the
/// key's UTF-8 bytes). 160 bits, as in Kademlia and hivemind, gives 160 k-buckets and 20-byte ids on the wire;
/// truncating SHA-256 keeps 80 bits of collision resistance, which is ample for ids that are also bound to a key
/// pair by signatures.
/// </summary>
/// <remarks>
/// Ids compare as unsigned big-endian integers; the distance between two ids is their XOR, read the same way.
/// Formatted as 40 lower-case hex digits. Immutable and thread-safe.
/// </remarks>
public readonly struct NodeId : IEquatable<NodeId>, IComparable<NodeId>
{
    /// <summary>The size of an id in bytes (20).</summary>
    public const int Size = 20;

    /// <summary>The size of an id in bits (160), which is also the number of k-buckets.</summary>
    public const int BitLength = Size * 8;

    private static readonly byte[] KeyDomain = Encoding.ASCII.GetBytes("petals-dht-key-v1\0");

    // Bytes 0..7, 8..15 and 16..19 of the big-endian form.
    private readonly ulong _high;
    private readonly ulong _middle;
    private readonly uint _low;

    private NodeId(ulong high, ulong middle, uint low)
    {
        _high = high;
        _middle = middle;
        _low = low;
    }

    /// <summary>The all-zero id (the distance from an id to itself).</summary>
    public static NodeId Zero => default;

    /// <summary>The all-ones id (the largest possible distance).</summary>
    public static NodeId MaxValue => new(ulong.MaxValue, ulong.MaxValue, uint.MaxValue);

    /// <summary>Whether every bit is zero.</summary>
    public bool IsZero => (_high | _middle | _low) == 0;

    /// <summary>Reads an id from exactly <see cref="Size"/> big-endian bytes.</summary>
    /// <param name="bytes">The 20 bytes of the id.</param>
    /// <exception cref="ArgumentException"><paramref name="bytes"/> is not exactly 20 bytes long.</exception>
    public static NodeId FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size)
        {
            throw new ArgumentException($"A node id is {Size} bytes, not {bytes.Length}.", nameof(bytes));
        }

        return new NodeId(
            BinaryPrimitives.ReadUInt64BigEndian(bytes),
            BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]),
            BinaryPrimitives.ReadUInt32BigEndian(bytes[16..]));
    }

    /// <summary>The id of the node whose public key is <paramref name="subjectPublicKeyInfo"/>: the first 20 bytes of its SHA-256.</summary>
    /// <param name="subjectPublicKeyInfo">The DER-encoded SubjectPublicKeyInfo of the node's public key.</param>
    /// <exception cref="ArgumentException">The key is empty.</exception>
    public static NodeId FromPublicKey(ReadOnlySpan<byte> subjectPublicKeyInfo)
    {
        if (subjectPublicKeyInfo.IsEmpty)
        {
            throw new ArgumentException("The public key is empty.", nameof(subjectPublicKeyInfo));
        }

        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(subjectPublicKeyInfo, hash);
        return FromBytes(hash[..Size]);
    }

    /// <summary>
    /// The location of the DHT key <paramref name="key"/> (e.g. <c>"model.12"</c>): the first 20 bytes of SHA-256 over
    /// a domain prefix and the key's UTF-8 bytes, so a key's location can never equal a node id by construction.
    /// </summary>
    /// <param name="key">The DHT key; not empty.</param>
    /// <exception cref="ArgumentException">The key is null or empty.</exception>
    public static NodeId FromKey(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        var length = KeyDomain.Length + Encoding.UTF8.GetByteCount(key);
        var buffer = length <= 512 ? stackalloc byte[length] : new byte[length];
        KeyDomain.CopyTo(buffer);
        Encoding.UTF8.GetBytes(key, buffer[KeyDomain.Length..]);
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(buffer, hash);
        return FromBytes(hash[..Size]);
    }

    /// <summary>A uniformly random id.</summary>
    /// <param name="random">The source of randomness (injected so tests are reproducible).</param>
    public static NodeId CreateRandom(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        Span<byte> bytes = stackalloc byte[Size];
        random.NextBytes(bytes);
        return FromBytes(bytes);
    }

    /// <summary>
    /// A uniformly random id whose distance from <paramref name="origin"/> falls in k-bucket
    /// <paramref name="bucketIndex"/>, i.e. in [2^index, 2^(index+1)): the target of a bucket refresh lookup.
    /// </summary>
    /// <param name="origin">The id the bucket is relative to (the local node).</param>
    /// <param name="bucketIndex">The bucket, 0 to 159.</param>
    /// <param name="random">The source of randomness.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bucketIndex"/> is outside 0..159.</exception>
    public static NodeId CreateRandomInBucket(NodeId origin, int bucketIndex, Random random)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bucketIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(bucketIndex, BitLength);
        ArgumentNullException.ThrowIfNull(random);
        Span<byte> distance = stackalloc byte[Size];
        random.NextBytes(distance);

        // Keep bit `bucketIndex` (counting from the least significant bit) set and every higher bit clear.
        var byteIndex = Size - 1 - (bucketIndex / 8);
        var bit = bucketIndex % 8;
        distance[..byteIndex].Clear();
        distance[byteIndex] = (byte)((distance[byteIndex] & ((1 << bit) - 1)) | (1 << bit));
        return origin ^ FromBytes(distance);
    }

    /// <summary>Parses 40 hex digits (either case).</summary>
    /// <param name="text">The hex form.</param>
    /// <exception cref="FormatException">The text is not exactly 40 hex digits.</exception>
    public static NodeId Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!TryParse(text, out var id))
        {
            throw new FormatException($"A node id is {Size * 2} hex digits; '{(text.Length > 64 ? text[..64] + "…" : text)}' is not.");
        }

        return id;
    }

    /// <summary>Tries to parse 40 hex digits (either case).</summary>
    /// <param name="text">The hex form.</param>
    /// <param name="id">The id when the text is valid.</param>
    /// <returns>Whether the text was exactly 40 hex digits.</returns>
    public static bool TryParse([NotNullWhen(true)] string? text, out NodeId id)
    {
        id = default;
        if (text is null || text.Length != Size * 2)
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[Size];
        if (Convert.FromHexString(text, bytes, out _, out var written) != System.Buffers.OperationStatus.Done || written != Size)
        {
            return false;
        }

        id = FromBytes(bytes);
        return true;
    }

    /// <summary>Writes the 20 big-endian bytes into <paramref name="destination"/>.</summary>
    /// <param name="destination">At least 20 bytes.</param>
    /// <exception cref="ArgumentException">The destination is shorter than 20 bytes.</exception>
    public void WriteTo(Span<byte> destination)
    {
        if (destination.Length < Size)
        {
            throw new ArgumentException($"A node id needs {Size} bytes; the destination has {destination.Length}.", nameof(destination));
        }

        BinaryPrimitives.WriteUInt64BigEndian(destination, _high);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _middle);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], _low);
    }

    /// <summary>The 20 big-endian bytes as a new array.</summary>
    public byte[] ToByteArray()
    {
        var bytes = new byte[Size];
        WriteTo(bytes);
        return bytes;
    }

    /// <summary>The XOR distance to <paramref name="other"/>.</summary>
    /// <param name="other">The other id.</param>
    public NodeId DistanceTo(NodeId other) => this ^ other;

    /// <summary>
    /// Compares the distances of <paramref name="a"/> and <paramref name="b"/> from this id: negative when
    /// <paramref name="a"/> is closer, zero when they are the same id, positive when <paramref name="b"/> is closer.
    /// </summary>
    /// <param name="a">The first id.</param>
    /// <param name="b">The second id.</param>
    public int CompareDistance(NodeId a, NodeId b) => (this ^ a).CompareTo(this ^ b);

    /// <summary>The number of leading zero bits (160 for <see cref="Zero"/>).</summary>
    public int LeadingZeroCount()
    {
        if (_high != 0)
        {
            return BitOperations.LeadingZeroCount(_high);
        }

        if (_middle != 0)
        {
            return 64 + BitOperations.LeadingZeroCount(_middle);
        }

        return _low != 0 ? 128 + BitOperations.LeadingZeroCount(_low) : BitLength;
    }

    /// <summary>
    /// The k-bucket that <paramref name="other"/> belongs to relative to this id: the index of the highest set bit of
    /// their distance, 0 (distance 1) to 159 (the other half of the id space); -1 when the ids are equal.
    /// </summary>
    /// <param name="other">The other id.</param>
    public int BucketIndexOf(NodeId other) => BitLength - 1 - (this ^ other).LeadingZeroCount();

    /// <summary>The bitwise XOR of two ids (their Kademlia distance).</summary>
    /// <param name="left">The first id.</param>
    /// <param name="right">The second id.</param>
    public static NodeId operator ^(NodeId left, NodeId right) =>
        new(left._high ^ right._high, left._middle ^ right._middle, left._low ^ right._low);

    /// <summary>The bitwise XOR of two ids (their Kademlia distance).</summary>
    /// <param name="left">The first id.</param>
    /// <param name="right">The second id.</param>
    public static NodeId Xor(NodeId left, NodeId right) => left ^ right;

    /// <inheritdoc/>
    public int CompareTo(NodeId other)
    {
        var c = _high.CompareTo(other._high);
        if (c != 0)
        {
            return c;
        }

        c = _middle.CompareTo(other._middle);
        return c != 0 ? c : _low.CompareTo(other._low);
    }

    /// <inheritdoc/>
    public bool Equals(NodeId other) => _high == other._high && _middle == other._middle && _low == other._low;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is NodeId other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(_high, _middle, _low);

    /// <summary>The 40 lower-case hex digits.</summary>
    public override string ToString() => string.Create(Size * 2, this, static (chars, id) =>
    {
        Span<byte> bytes = stackalloc byte[Size];
        id.WriteTo(bytes);
        Convert.TryToHexStringLower(bytes, chars, out _);
    });

    /// <summary>Equality of ids.</summary>
    /// <param name="left">The first id.</param>
    /// <param name="right">The second id.</param>
    public static bool operator ==(NodeId left, NodeId right) => left.Equals(right);

    /// <summary>Inequality of ids.</summary>
    /// <param name="left">The first id.</param>
    /// <param name="right">The second id.</param>
    public static bool operator !=(NodeId left, NodeId right) => !left.Equals(right);

    /// <summary>Whether <paramref name="left"/> is numerically smaller.</summary>
    /// <param name="left">The first id.</param>
    /// <param name="right">The second id.</param>
    public static bool operator <(NodeId left, NodeId right) => left.CompareTo(right) < 0;

    /// <summary>Whether <paramref name="left"/> is numerically larger.</summary>
    /// <param name="left">The first id.</param>
    /// <param name="right">The second id.</param>
    public static bool operator >(NodeId left, NodeId right) => left.CompareTo(right) > 0;

    /// <summary>Whether <paramref name="left"/> is numerically smaller or equal.</summary>
    /// <param name="left">The first id.</param>
    /// <param name="right">The second id.</param>
    public static bool operator <=(NodeId left, NodeId right) => left.CompareTo(right) <= 0;

    /// <summary>Whether <paramref name="left"/> is numerically larger or equal.</summary>
    /// <param name="left">The first id.</param>
    /// <param name="right">The second id.</param>
    public static bool operator >=(NodeId left, NodeId right) => left.CompareTo(right) >= 0;
}
