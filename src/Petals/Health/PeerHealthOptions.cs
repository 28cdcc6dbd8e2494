namespace Petals.Health;

/// <summary>
/// How the default peer-health policy (<see cref="PeerHealthPolicy"/>) bans servers that failed and smooths round
/// trips, and how ping rounds are scheduled.
/// </summary>
public sealed class PeerHealthOptions
{
    /// <summary>How long a peer is banned after its first failure; each further failure doubles it. Default 15 s.</summary>
    public TimeSpan BanBase { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>The longest ban, however many failures. Default 10 minutes.</summary>
    public TimeSpan BanCap { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How long a peer whose output was proven wrong (<see cref="Petals.Routing.PeerFailureKind.WrongOutput"/>) is banned:
    /// a lie is no transient fault, so the ban is long, is not lifted by a later success, and does not double (every
    /// further conviction starts it again). Default 24 hours.
    /// </summary>
    public TimeSpan WrongOutputBan { get; set; } = TimeSpan.FromHours(24);

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
    /// <exception cref="ArgumentException">When a value is out of range; the message names it.</exception>
    public void Validate()
    {
        if (BanBase <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(BanBase), BanBase, "BanBase must be positive.");
        }

        if (BanCap < BanBase)
        {
            throw new ArgumentOutOfRangeException(nameof(BanCap), BanCap, $"BanCap must be at least BanBase ({BanBase}).");
        }

        if (WrongOutputBan <= TimeSpan.Zero || WrongOutputBan > TimeSpan.FromDays(365))
        {
            throw new ArgumentOutOfRangeException(nameof(WrongOutputBan), WrongOutputBan, "WrongOutputBan must be positive and at most 365 days.");
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
}
