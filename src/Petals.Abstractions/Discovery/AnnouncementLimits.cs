namespace Petals.Discovery;

/// <summary>
/// The limits every <see cref="IPeerDiscovery"/> announcement respects, shared by the DHT encoding, the server's
/// announcer and the model-id computation so that an id or model a server accepts is one the swarm can carry.
/// </summary>
public static class AnnouncementLimits
{
    /// <summary>
    /// The longest model id, in UTF-8 bytes: block keys <c>"{modelId}.{block}"</c> must fit the DHT's 256-byte key
    /// limit (the wire handshake alone would allow 255).
    /// </summary>
    public const int MaxModelIdBytes = 240;

    /// <summary>The largest model, in blocks, an announcement or the model index may name (real models have a few hundred).</summary>
    public const int MaxBlockCount = 1024;
}
