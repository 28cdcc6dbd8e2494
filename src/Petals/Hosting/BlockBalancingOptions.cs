namespace Petals.Hosting;

/// <summary>
/// How a server placed by the swarm (no <see cref="PetalsServerOptions.Blocks"/>) chooses its span when it joins and
/// moves later (see <c>Petals.Balancing.IBlockBalancer</c>); checked by <see cref="Validate"/> when the host starts.
/// </summary>
public sealed class BlockBalancingOptions
{
    /// <summary>
    /// The period of rebalancing checks: every server checks once per period, at a random time within its second half
    /// (so servers started together do not check together, and a block that lost its last server is filled within one
    /// period). <see cref="Timeout.InfiniteTimeSpan"/> turns moving off. Default 120 s (Petals' default).
    /// </summary>
    public TimeSpan BalancePeriod { get; set; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// Move only when the swarm's throughput now is below this share of what it would be after the move and everyone's
    /// response; above 1 moves at every check to the best span. In (0, 10]. Default 0.75 (Petals' default).
    /// </summary>
    public double BalanceQuality { get; set; } = 0.75;

    /// <summary>
    /// The longest random wait before a joining server reads the swarm to choose its span (servers started together
    /// then read it at different times, each seeing the others that announced <c>joining</c> before it). Default 3 s.
    /// </summary>
    public TimeSpan MaxJoinDelay { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// How long after announcing <c>joining</c> a server reads the swarm again, to move off a span another joining server
    /// took at the same time (of two such servers, the one with the greater peer id moves). Default 1 s.
    /// </summary>
    public TimeSpan JoinRecheckDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// When moving, how long the old span's running sessions may go on (the old span accepts no new sessions) before they
    /// are ended with the retryable <c>shutting_down</c> error that clients recover from. Default 30 s.
    /// </summary>
    public TimeSpan MoveDrainTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The randomness of the join delay and check times (a seeded one for reproducible tests); <see cref="System.Random.Shared"/> if null.</summary>
    public Random? Random { get; set; }

    /// <summary>A copy of these settings.</summary>
    /// <returns>The copy.</returns>
    public BlockBalancingOptions Clone() => (BlockBalancingOptions)MemberwiseClone();

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the parameter name is the property's.</exception>
    public void Validate()
    {
        if (BalancePeriod != Timeout.InfiniteTimeSpan && (BalancePeriod <= TimeSpan.Zero || BalancePeriod > Server.BlockServerOptions.MaxTimeout))
        {
            throw new ArgumentOutOfRangeException(nameof(BalancePeriod), BalancePeriod, "The balance period must be positive and at most 49.7 days, or Timeout.InfiniteTimeSpan to never move.");
        }

        if (!double.IsFinite(BalanceQuality) || BalanceQuality <= 0 || BalanceQuality > 10)
        {
            throw new ArgumentOutOfRangeException(nameof(BalanceQuality), BalanceQuality, "The balance quality must be in (0, 10] (0.75 by default; above 1 moves at every check).");
        }

        foreach (var (name, value) in new[] { (nameof(MaxJoinDelay), MaxJoinDelay), (nameof(JoinRecheckDelay), JoinRecheckDelay) })
        {
            if (value < TimeSpan.Zero || value > Server.BlockServerOptions.MaxTimeout)
            {
                throw new ArgumentOutOfRangeException(name, value, $"{name} must be zero or positive and at most 49.7 days.");
            }
        }

        if (MoveDrainTimeout < TimeSpan.Zero || MoveDrainTimeout > Server.BlockServerOptions.MaxTimeout)
        {
            throw new ArgumentOutOfRangeException(nameof(MoveDrainTimeout), MoveDrainTimeout, "The move drain timeout must be zero or positive and at most 49.7 days.");
        }
    }
}
