using Petals.Client.Routing;

namespace Petals.Client;

/// <summary>How a <see cref="SwarmSequenceManager"/> reads the swarm and chooses chains.</summary>
public sealed class SwarmSequenceOptions
{
    /// <summary>How often the block announcements are read again in the background. Default 30 s.</summary>
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How many chains connecting may try: a server that refuses or cannot be reached is excluded and another chain
    /// built, up to this many times. Default 5.
    /// </summary>
    public int MaxChainAttempts { get; set; } = 5;

    /// <summary>
    /// How the manager's default router chooses routes (<see cref="SwarmSequenceManager.RouteInference"/>): allowed and
    /// blocked peers, hop overhead, assumed round-trip time and throughput. Defaults when not set.
    /// </summary>
    public RouterOptions Router { get; set; } = new();

    /// <summary>
    /// How the manager's default peer-health policy bans servers that failed and smooths round trips, and how its ping
    /// rounds are scheduled. Defaults when not set.
    /// </summary>
    public Health.PeerHealthOptions Health { get; set; } = new();

    /// <summary>Checks the options, the nested <see cref="Router"/> and <see cref="Health"/> included.</summary>
    /// <exception cref="ArgumentException">When a value is out of range; the message names it.</exception>
    public void Validate()
    {
        ValidateOwn();
        ArgumentNullException.ThrowIfNull(Router, nameof(Router));
        Router.Validate();
        ArgumentNullException.ThrowIfNull(Health, nameof(Health));
        Health.Validate();
    }

    /// <summary>Checks the settings of this object itself, not the nested ones (hosts name those separately).</summary>
    /// <exception cref="ArgumentException">When a value is out of range; the message names it.</exception>
    internal void ValidateOwn()
    {
        if (RefreshInterval <= TimeSpan.Zero || RefreshInterval > TimeSpan.FromDays(1))
        {
            throw new ArgumentOutOfRangeException(nameof(RefreshInterval), RefreshInterval, "RefreshInterval must be positive and at most one day.");
        }

        if (MaxChainAttempts < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxChainAttempts), MaxChainAttempts, "MaxChainAttempts must be at least 1.");
        }
    }
}
