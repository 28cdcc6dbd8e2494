namespace Petals.Client.Routing;

/// <summary>
/// How the client chooses servers: which peers it may use and the costs of the latency model. Bans and pings are the
/// peer-health policy's (<see cref="Health.PeerHealthOptions"/>).
/// </summary>
public sealed class RouterOptions
{
    /// <summary>When not empty, the only peers (by peer id) the client may route through. Default empty (all peers).</summary>
    public ISet<string> AllowedPeers { get; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>Peers (by peer id) the client never routes through, even when no other server has a block. Default empty.</summary>
    public ISet<string> BlockedPeers { get; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>The fixed cost of entering a server (one more hop: framing, scheduling, serialization). Default 10 ms.</summary>
    public TimeSpan HopOverhead { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// The cost added for entering a server whose announced free cache cannot hold the inference session: large, so such
    /// a server is used only when nothing else covers its blocks. Default 1 hour.
    /// </summary>
    public TimeSpan CacheMissPenalty { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// The round-trip time assumed for a server the client has not measured, and between two servers when the first
    /// announces none to the second. Default 100 ms.
    /// </summary>
    public TimeSpan UnknownRtt { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The throughput (tokens per second per block) assumed for a server that announces none (0). Default 10.</summary>
    public double DefaultThroughput { get; set; } = 10;

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentException">When a value is out of range or a peer list is inconsistent; the message names it.</exception>
    public void Validate()
    {
        CheckPeers(AllowedPeers, nameof(AllowedPeers));
        CheckPeers(BlockedPeers, nameof(BlockedPeers));
        foreach (var peer in AllowedPeers)
        {
            if (BlockedPeers.Contains(peer))
            {
                throw new ArgumentException($"Peer '{peer}' is in both AllowedPeers and BlockedPeers.", nameof(BlockedPeers));
            }
        }

        NotNegative(HopOverhead, nameof(HopOverhead));
        NotNegative(CacheMissPenalty, nameof(CacheMissPenalty));
        NotNegative(UnknownRtt, nameof(UnknownRtt));
        if (!double.IsFinite(DefaultThroughput) || DefaultThroughput <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(DefaultThroughput), DefaultThroughput, "DefaultThroughput must be a positive number.");
        }
    }

    private static void CheckPeers(ISet<string> peers, string name)
    {
        foreach (var peer in peers)
        {
            if (string.IsNullOrWhiteSpace(peer))
            {
                throw new ArgumentException($"{name} contains an empty peer id.", name);
            }
        }
    }

    private static void NotNegative(TimeSpan value, string name)
    {
        if (value < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} must not be negative.");
        }
    }
}
