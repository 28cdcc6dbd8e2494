using System.Globalization;
using Petals.Models;

namespace Petals.Balancing;

/// <summary>
/// The default <see cref="IBlockBalancer"/>: the greedy scheme of the Petals paper. A joining server takes the window
/// of blocks whose per-block swarm throughputs, sorted ascending, compare lowest (so the weakest block first, then
/// the next weakest, ...). A running server moves only when simulating its departure, its greedy return and every
/// other server's greedy response (in random order, until nobody moves) raises the swarm's throughput enough, and
/// never when it is the only holder of a block it would leave.
/// </summary>
/// <remarks>
/// Thread-safe. The randomness (the order of the simulated responses) comes from the <see cref="Random"/> given, else
/// <see cref="Random.Shared"/>.
/// </remarks>
public sealed class GreedyBlockBalancer : IBlockBalancer
{
    /// <summary>
    /// A server is taken out of the throughputs with a factor <c>1 + Epsilon</c> (and put back with its plain throughput):
    /// without it, rounding could make its own span look best again and hide a better one.
    /// </summary>
    private const double Epsilon = 1e-3;

    /// <summary>Bounds the simulated responses (each pass moves at least one server, and moves raise no cost; the bound is a safety net).</summary>
    private const int MaxResponsePasses = 64;

    private readonly Random _random;
    private readonly Lock _randomLock = new();

    /// <summary>Creates the balancer.</summary>
    /// <param name="random">The randomness of the simulated responses (a seeded one makes decisions reproducible); <see cref="Random.Shared"/> if null.</param>
    public GreedyBlockBalancer(Random? random = null) => _random = random ?? Random.Shared;

    /// <inheritdoc />
    public BlockRange ChooseSpan(SwarmLoad swarm, int numBlocks)
    {
        ArgumentNullException.ThrowIfNull(swarm);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numBlocks);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(numBlocks, swarm.BlockCount);
        var start = BestStart(swarm.BlockThroughputs(), numBlocks);
        return new BlockRange(start, start + numBlocks);
    }

    /// <inheritdoc />
    public BalanceDecision Evaluate(SwarmLoad swarm, string localPeerId, double balanceQuality)
    {
        ArgumentNullException.ThrowIfNull(swarm);
        ArgumentNullException.ThrowIfNull(localPeerId);
        if (!double.IsFinite(balanceQuality) || balanceQuality <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(balanceQuality), balanceQuality, "The balance quality must be a positive, finite number (0.75 by default; above 1 forces a move).");
        }

        var servers = swarm.Servers;
        var local = -1;
        for (var i = 0; i < servers.Count; i++)
        {
            if (string.Equals(servers[i].PeerId, localPeerId, StringComparison.Ordinal))
            {
                local = i;
                break;
            }
        }

        if (local < 0)
        {
            throw new ArgumentException($"Server '{localPeerId}' is not in the swarm view: it cannot weigh a move of a span it has not announced.", nameof(localPeerId));
        }

        var starts = new int[servers.Count];
        var lengths = new int[servers.Count];
        var speeds = new double[servers.Count];
        for (var i = 0; i < servers.Count; i++)
        {
            (starts[i], lengths[i], speeds[i]) = (servers[i].Span.Start, servers[i].Span.Count, servers[i].Throughput);
        }

        var throughputs = swarm.BlockThroughputs();
        var initial = Min(throughputs);
        var initialGaps = Gaps(throughputs);
        var current = servers[local].Span;

        // Leave, and find the best window for the rest of the swarm as it stands.
        Add(throughputs, starts[local], lengths[local], -speeds[local] * (1 + Epsilon));
        var best = BestStart(throughputs, lengths[local]);
        var target = new BlockRange(best, best + lengths[local]);
        if (best == starts[local])
        {
            return new BalanceDecision(false, current, current, initial, initial, "already in its best span");
        }

        // Never leave a block without a server (whatever the throughputs say).
        var holders = swarm.BlockHolders();
        for (var b = current.Start; b < current.End; b++)
        {
            if (!target.Contains(b) && holders[b] <= 1)
            {
                return new BalanceDecision(false, current, target, initial, initial, string.Create(CultureInfo.InvariantCulture, $"only holder of block {b}: stays"));
            }
        }

        Add(throughputs, starts[local], lengths[local], speeds[local] * Epsilon);
        starts[local] = best;
        Add(throughputs, best, lengths[local], speeds[local]);
        if (balanceQuality > 1)
        {
            return new BalanceDecision(true, current, target, initial, Min(throughputs), "move forced (balance quality above 1)");
        }

        // Every server responds greedily, in random order, until nobody moves.
        var order = Enumerable.Range(0, servers.Count).ToArray();
        for (var pass = 0; pass < MaxResponsePasses; pass++)
        {
            lock (_randomLock)
            {
                _random.Shuffle(order);
            }

            var moved = false;
            foreach (var i in order)
            {
                Add(throughputs, starts[i], lengths[i], -speeds[i] * (1 + Epsilon));
                var start = BestStart(throughputs, lengths[i]);
                Add(throughputs, starts[i], lengths[i], speeds[i] * Epsilon);

                // The server is out of the throughputs now (removed with 1 + eps, eps given back): put it back where it
                // goes, whether it moved or not.
                if (start != starts[i])
                {
                    starts[i] = start;
                    moved = true;
                }

                Add(throughputs, starts[i], lengths[i], speeds[i]);
            }

            if (!moved)
            {
                break;
            }
        }

        var projected = Min(throughputs);
        var projectedGaps = Gaps(throughputs);
        if (initial < Epsilon && projected < Epsilon)
        {
            // A swarm with uncovered blocks stays at 0 until the last gap closes: count the gaps a move closes instead.
            var fewer = projectedGaps < initialGaps;
            return new BalanceDecision(fewer, current, target, initial, projected, string.Create(CultureInfo.InvariantCulture,
                $"uncovered blocks {initialGaps} -> {projectedGaps}"));
        }

        if (projected < initial || projected < Epsilon)
        {
            return new BalanceDecision(false, current, target, initial, projected, string.Create(CultureInfo.InvariantCulture,
                $"a move would not raise the swarm throughput ({initial:0.###} -> {projected:0.###} tokens/s)"));
        }

        var quality = initial / projected;
        var move = quality < balanceQuality - Epsilon;
        return new BalanceDecision(move, current, target, initial, projected, string.Create(CultureInfo.InvariantCulture,
            $"swarm throughput {initial:0.###} -> {projected:0.###} tokens/s (quality {quality:0.###} {(move ? "<" : ">=")} {balanceQuality:0.###})"));
    }

    /// <summary>
    /// The start of the window of <paramref name="length"/> blocks whose throughputs, sorted ascending, compare lowest
    /// (lexicographically); the lowest start among equals.
    /// </summary>
    internal static int BestStart(double[] throughputs, int length)
    {
        var windows = throughputs.Length - length + 1;

        // Most windows lose on their weakest block alone: sort only those tied for the lowest minimum.
        var minima = new double[windows];
        var lowest = double.PositiveInfinity;
        for (var s = 0; s < windows; s++)
        {
            var min = double.PositiveInfinity;
            for (var b = s; b < s + length; b++)
            {
                min = Math.Min(min, throughputs[b]);
            }

            minima[s] = min;
            lowest = Math.Min(lowest, min);
        }

        var best = -1;
        double[]? bestSorted = null;
        double[]? candidate = null;
        for (var s = 0; s < windows; s++)
        {
            if (minima[s] != lowest)
            {
                continue;
            }

            if (best < 0)
            {
                best = s;
                continue;
            }

            if (bestSorted is null)
            {
                bestSorted = new double[length];
                candidate = new double[length];
                Array.Copy(throughputs, best, bestSorted, 0, length);
                Array.Sort(bestSorted);
            }

            Array.Copy(throughputs, s, candidate!, 0, length);
            Array.Sort(candidate!);
            if (((ReadOnlySpan<double>)candidate).SequenceCompareTo(bestSorted) < 0)
            {
                (best, bestSorted, candidate) = (s, candidate, bestSorted);
            }
        }

        return best;
    }

    private static void Add(double[] throughputs, int start, int length, double value)
    {
        for (var b = start; b < start + length; b++)
        {
            throughputs[b] += value;
        }
    }

    private static double Min(double[] values)
    {
        var min = double.PositiveInfinity;
        foreach (var v in values)
        {
            min = Math.Min(min, v);
        }

        return min;
    }

    private static int Gaps(double[] throughputs)
    {
        var gaps = 0;
        foreach (var t in throughputs)
        {
            if (t < Epsilon)
            {
                gaps++;
            }
        }

        return gaps;
    }
}
