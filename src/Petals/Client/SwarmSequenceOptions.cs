using Petals.Client.Routing;

namespace Petals.Client;

/// <summary>How a <see cref="SwarmSequenceManager"/> reads the swarm and chooses chains.</summary>
public sealed class SwarmSequenceOptions
{
    /// <summary>How often the block announcements are read again in the background. Default 30 s.</summary>
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The throughput (tokens per second per block) assumed for a server that announces none (0). Default 10: an
    /// unmeasured server looks slow, so measured ones are preferred.
    /// </summary>
    public double DefaultThroughput { get; set; } = 10;

    /// <summary>The fixed cost of each server in a chain (one more network hop). Default 10 ms.</summary>
    public TimeSpan HopCost { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// The round-trip time assumed from a server to the next one of a chain when the first does not announce it.
    /// Default 50 ms.
    /// </summary>
    public TimeSpan UnknownRtt { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// How many chains connecting may try: a server that refuses or cannot be reached is excluded and another chain
    /// built, up to this many times. Default 5.
    /// </summary>
    public int MaxChainAttempts { get; set; } = 5;

    /// <summary>
    /// How connecting through the manager routes (<see cref="SwarmSequenceManager.RouteInference"/>): allowed and
    /// blocked peers, hop overhead, assumed round-trip time and throughput, ban durations, RTT smoothing and pings.
    /// Defaults when not set.
    /// </summary>
    public RouterOptions Router { get; set; } = new();

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentException">When a value is out of range; the message names it.</exception>
    public void Validate()
    {
        if (RefreshInterval <= TimeSpan.Zero || RefreshInterval > TimeSpan.FromDays(1))
        {
            throw new ArgumentOutOfRangeException(nameof(RefreshInterval), RefreshInterval, "RefreshInterval must be positive and at most one day.");
        }

        if (!double.IsFinite(DefaultThroughput) || DefaultThroughput <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(DefaultThroughput), DefaultThroughput, "DefaultThroughput must be a positive number.");
        }

        if (HopCost < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(HopCost), HopCost, "HopCost must not be negative.");
        }

        if (UnknownRtt < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(UnknownRtt), UnknownRtt, "UnknownRtt must not be negative.");
        }

        ArgumentNullException.ThrowIfNull(Router, nameof(Router));
        Router.Validate();

        if (MaxChainAttempts < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxChainAttempts), MaxChainAttempts, "MaxChainAttempts must be at least 1.");
        }
    }
}
