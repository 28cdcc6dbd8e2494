using Petals.Balancing;
using Petals.Models;

namespace Petals.Hosting;

/// <summary>How a server's span was chosen and how it moved since (see <see cref="IPetalsServer.Placement"/>).</summary>
public sealed record ServerPlacement
{
    /// <summary>Whether the swarm placed the server (no fixed <see cref="PetalsServerOptions.Blocks"/>); only then does it move.</summary>
    public required bool ChosenBySwarm { get; init; }

    /// <summary>How many blocks the server holds.</summary>
    public required int NumBlocks { get; init; }

    /// <summary>Why that many, e.g. <c>memory budget 12.0 GiB (50% of 24.0 GiB available (MemAvailable)) holds 5 of 5 blocks: …</c>.</summary>
    public required string SizeReason { get; init; }

    /// <summary>Why this span, e.g. <c>weakest window of the swarm: per-block throughput 0, 0 (3 servers seen)</c>.</summary>
    public required string SpanReason { get; init; }

    /// <summary>The span held now.</summary>
    public required BlockRange Span { get; init; }

    /// <summary>How many times the server moved.</summary>
    public int Moves { get; init; }

    /// <summary>The last rebalancing decision, or null before the first check.</summary>
    public BalanceDecision? LastDecision { get; init; }
}
