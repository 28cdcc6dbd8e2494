using Petals.Balancing;
using Petals.Models;
using Petals.Transport;

namespace Petals.Hosting;

/// <summary>A server moved to another span (<see cref="IPetalsServer.Moved"/>).</summary>
/// <param name="from">The span it left.</param>
/// <param name="to">The span it serves now.</param>
/// <param name="address">Where it listens now (a move opens a new listener; the old one closes once its sessions drained).</param>
/// <param name="decision">The balancer's decision that moved it.</param>
public sealed class ServerMovedEventArgs(BlockRange from, BlockRange to, PeerAddress address, BalanceDecision decision) : EventArgs
{
    /// <summary>The span it left.</summary>
    public BlockRange From { get; } = from;

    /// <summary>The span it serves now.</summary>
    public BlockRange To { get; } = to;

    /// <summary>Where it listens now.</summary>
    public PeerAddress Address { get; } = address;

    /// <summary>The balancer's decision that moved it.</summary>
    public BalanceDecision Decision { get; } = decision;
}
