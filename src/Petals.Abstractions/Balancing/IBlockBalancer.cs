using Petals.Models;

namespace Petals.Balancing;

/// <summary>
/// Places block servers in a swarm: which contiguous span a joining server takes, and whether a running server should
/// move because the swarm has become unbalanced (servers left, faster ones joined). The swarm's throughput is the
/// minimum over blocks of the summed throughput of the servers holding each block (<see cref="SwarmLoad.Throughput"/>):
/// a pipeline goes no faster than its weakest block. Implementations only read their arguments (plus their own
/// randomness) and are thread-safe.
/// </summary>
public interface IBlockBalancer
{
    /// <summary>Chooses the span a server of <paramref name="numBlocks"/> blocks should take to raise the swarm's throughput the most.</summary>
    /// <param name="swarm">The servers already in the swarm (joining and online), without the server that chooses.</param>
    /// <param name="numBlocks">How many blocks the server holds, 1 to <see cref="SwarmLoad.BlockCount"/>.</param>
    /// <returns>A span of exactly <paramref name="numBlocks"/> blocks within the model.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="swarm"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="numBlocks"/> is not 1 to the model's block count.</exception>
    BlockRange ChooseSpan(SwarmLoad swarm, int numBlocks);

    /// <summary>
    /// Decides whether the server <paramref name="localPeerId"/> should move: it simulates the server leaving, every
    /// other server responding to the new state, and compares the swarm's throughput with and without the move.
    /// </summary>
    /// <param name="swarm">The swarm as announced, including the local server (joining and online servers).</param>
    /// <param name="localPeerId">The server that considers moving; it must be in <paramref name="swarm"/>.</param>
    /// <param name="balanceQuality">
    /// Move only when the current throughput is below this share of the throughput after the move (0.75 moves when the
    /// move would raise it by a third or more); above 1 forces a move to the best span.
    /// </param>
    /// <returns>The decision, with the span to move to and the throughputs it compared.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="swarm"/> or <paramref name="localPeerId"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="localPeerId"/> is not in <paramref name="swarm"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="balanceQuality"/> is not a positive finite number.</exception>
    BalanceDecision Evaluate(SwarmLoad swarm, string localPeerId, double balanceQuality);
}
