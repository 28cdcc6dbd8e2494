namespace Petals.Client.Routing;

/// <summary>How the client chooses servers: which peers it may use, the costs of the latency model, bans and pings.</summary>
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

    /// <summary>How long a peer is banned after its first failure; each further failure doubles it. Default 15 s.</summary>
    public TimeSpan BanBase { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>The longest ban, however many failures. Default 10 minutes.</summary>
    public TimeSpan BanCap { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The weight of a new round-trip sample in the smoothed RTT (TCP's alpha: <c>srtt = (1 - a) srtt + a sample</c>).
    /// Default 0.125.
    /// </summary>
    public double RttSmoothing { get; set; } = 0.125;

    /// <summary>How many servers are pinged at the same time. Default 4.</summary>
    public int MaxConcurrentPings { get; set; } = 4;

    /// <summary>
    /// How many servers of each block a ping round chooses (counting servers chosen for other blocks that also have
    /// it). Default 3.
    /// </summary>
    public int PingsPerBlock { get; set; } = 3;

    /// <summary>How long a ping may take before the server counts as unreachable. Default 5 s.</summary>
    public TimeSpan PingTimeout { get; set; } = TimeSpan.FromSeconds(5);

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

        if (BanBase <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(BanBase), BanBase, "BanBase must be positive.");
        }

        if (BanCap < BanBase)
        {
            throw new ArgumentOutOfRangeException(nameof(BanCap), BanCap, $"BanCap must be at least BanBase ({BanBase}).");
        }

        if (!(RttSmoothing > 0 && RttSmoothing <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(RttSmoothing), RttSmoothing, "RttSmoothing must be in (0, 1].");
        }

        if (MaxConcurrentPings < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxConcurrentPings), MaxConcurrentPings, "MaxConcurrentPings must be at least 1.");
        }

        if (PingsPerBlock < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(PingsPerBlock), PingsPerBlock, "PingsPerBlock must be at least 1.");
        }

        if (PingTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(PingTimeout), PingTimeout, "PingTimeout must be positive.");
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
