namespace Petals.Transport;

/// <summary>
/// The identity the remote end of a stream proved with its key (e.g. by the TLS handshake of <c>tls://</c>), as
/// <see cref="ITransportStream.GetService"/> returns it: layers above the transport (the wire protocol's handshake,
/// the DHT) check the id a peer claims against it without knowing the transport.
/// </summary>
/// <remarks>
/// <para>A key-derived peer id is the lower-case hex SHA-256 of the key's SubjectPublicKeyInfo (64 hex digits). The
/// same key is also known by the first 40 hex digits of that hash (160 bits, a DHT node id), so
/// <see cref="IsIdentifiedBy"/> accepts either: finding another key whose hash starts with a given 160-bit prefix is a
/// second-preimage attack on 160 bits (about 2^160 work), far beyond reach, while a birthday collision between two
/// keys one controls (2^80) gains nothing, since each id must match a key that was already published.</para>
/// <para>A stream that proved nothing (plain TCP, the accepting side of TLS, in-memory streams) returns null for
/// this type. Immutable and thread-safe.</para>
/// </remarks>
public sealed class AuthenticatedPeer
{
    /// <summary>The length in hex digits of a full key-derived peer id (SHA-256).</summary>
    public const int PeerIdLength = 64;

    /// <summary>The length in hex digits of the short form of a key-derived peer id (its first 160 bits, a DHT node id).</summary>
    public const int ShortPeerIdLength = 40;

    /// <summary>Creates the proven identity.</summary>
    /// <param name="peerId">The proven key's id: <see cref="PeerIdLength"/> hex digits (stored in lower case).</param>
    /// <exception cref="ArgumentException"><paramref name="peerId"/> is not <see cref="PeerIdLength"/> hex digits.</exception>
    public AuthenticatedPeer(string peerId)
    {
        ArgumentNullException.ThrowIfNull(peerId);
        if (peerId.Length != PeerIdLength || !IsHex(peerId))
        {
            throw new ArgumentException($"A proven peer id is {PeerIdLength} hex digits (SHA-256 of the key), not '{peerId}'.", nameof(peerId));
        }

        PeerId = peerId.ToLowerInvariant();
    }

    /// <summary>The proven key's id: 64 lower-case hex digits.</summary>
    public string PeerId { get; }

    /// <summary>The short form of <see cref="PeerId"/>: its first 40 hex digits (the DHT node id of the same key).</summary>
    public string ShortPeerId => PeerId[..ShortPeerIdLength];

    /// <summary>
    /// Whether <paramref name="id"/> names this key: it is <see cref="PeerId"/> or <see cref="ShortPeerId"/>, in any
    /// letter case. Any other string (another key, a shorter prefix, a free-form name) does not.
    /// </summary>
    /// <param name="id">A claimed or expected peer id.</param>
    /// <returns>Whether the id stands for the proven key.</returns>
    public bool IsIdentifiedBy(string? id) =>
        id is { Length: PeerIdLength or ShortPeerIdLength } && PeerId.StartsWith(id, StringComparison.OrdinalIgnoreCase);

    /// <summary>The proven id.</summary>
    /// <returns><see cref="PeerId"/>.</returns>
    public override string ToString() => PeerId;

    private static bool IsHex(string text)
    {
        foreach (var c in text)
        {
            if (!char.IsAsciiHexDigit(c))
            {
                return false;
            }
        }

        return true;
    }
}
