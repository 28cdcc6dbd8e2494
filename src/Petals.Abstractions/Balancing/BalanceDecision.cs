using Petals.Models;

namespace Petals.Balancing;

/// <summary>What <see cref="IBlockBalancer.Evaluate"/> decided, with the figures it compared (for logs and monitors).</summary>
/// <param name="Move">Whether the server should move to <paramref name="Target"/>.</param>
/// <param name="Current">The span the server holds now.</param>
/// <param name="Target">The best span for it with the rest of the swarm as it is (equal to <paramref name="Current"/> when there is none better).</param>
/// <param name="Throughput">The swarm's throughput now (tokens/s).</param>
/// <param name="ProjectedThroughput">The swarm's throughput after the move and the other servers' simulated responses (equal to <paramref name="Throughput"/> when no move was simulated).</param>
/// <param name="Reason">Why, in one line: e.g. <c>swarm throughput 12.0 → 40.0 tokens/s (quality 0.30 &lt; 0.75)</c> or <c>only holder of block 3</c>.</param>
public sealed record BalanceDecision(bool Move, BlockRange Current, BlockRange Target, double Throughput, double ProjectedThroughput, string Reason);
