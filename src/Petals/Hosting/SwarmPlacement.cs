using System.Globalization;
using Petals.Balancing;
using Petals.Discovery;
using Petals.Models;
using Petals.Server;

namespace Petals.Hosting;

/// <summary>
/// The steps of a server that the swarm places: how many blocks (given, or what the memory budget holds), whether the
/// swarm runs the same model shape, which span to take when joining and whether to leave it for another joining
/// server's. Stateless; <see cref="PetalsServerService"/> runs them in order.
/// </summary>
internal static class SwarmPlacement
{
    /// <summary>How many blocks to hold, and why (a line for the operator).</summary>
    /// <exception cref="InvalidOperationException">The count is above the model's blocks, or the budget holds no block; the message says what one block needs.</exception>
    public static (int Blocks, string Why) PlanBlockCount(PetalsServerOptions settings, IModelWeights weights, BlockServerOptions server)
    {
        var total = weights.Config.NumLayers;
        if (settings.NumBlocks is { } given)
        {
            return given > total
                ? throw new InvalidOperationException($"--num-blocks {given} is more than the model's {total} blocks ({settings.ModelPath}).")
                : (given, string.Create(CultureInfo.InvariantCulture, $"{given} of {total} blocks as asked (num-blocks)"));
        }

        var estimate = BlockMemoryEstimate.For(weights, server);
        var (budget, budgetWhy) = settings.MemoryBudget is { } set ? (set, "memory-budget") : BlockMemoryEstimate.DefaultBudget();
        var blocks = estimate.BlocksWithin(budget, total);
        var costs = string.Create(CultureInfo.InvariantCulture,
            $"per block {BlockMemoryEstimate.FormatBytes(estimate.WeightBytesPerBlock)} weights + {BlockMemoryEstimate.FormatBytes(estimate.CacheBytesPerBlock)} attention cache ({server.CacheTokens} cache tokens), plus {BlockMemoryEstimate.FormatBytes(estimate.WorkingBytes)} working buffers");
        if (blocks < 1)
        {
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                $"memory budget {BlockMemoryEstimate.FormatBytes(budget)} ({budgetWhy}) holds no block of this model: one needs {BlockMemoryEstimate.FormatBytes(estimate.BytesFor(1))} ({costs}); raise --memory-budget or lower --cache-tokens."));
        }

        return (blocks, string.Create(CultureInfo.InvariantCulture,
            $"memory budget {BlockMemoryEstimate.FormatBytes(budget)} ({budgetWhy}) holds {blocks} of {total} blocks: {costs}"));
    }

    /// <summary>Refuses to join a swarm whose servers announce <paramref name="modelId"/> with another number of blocks.</summary>
    /// <exception cref="InvalidOperationException">The shapes differ; the message names both.</exception>
    public static async Task CheckModelShapeAsync(IPeerDiscovery discovery, string modelId, int blockCount, string source, CancellationToken cancellationToken)
    {
        var models = await discovery.GetModelsAsync(cancellationToken).ConfigureAwait(false);
        foreach (var model in models)
        {
            if (string.Equals(model.ModelId, modelId, StringComparison.Ordinal) && model.BlockCount != blockCount)
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                    $"the swarm's {model.ServerCount} server(s) of model '{modelId}' announce {model.BlockCount} blocks, but {source} has {blockCount}: not joined (another model under the same id? check --model-id)."));
            }
        }
    }

    /// <summary>Reads every block's announcements of the model as a balancing view.</summary>
    public static async Task<(SwarmLoad Swarm, IReadOnlyList<BlockServers> Raw)> ReadSwarmAsync(IPeerDiscovery discovery, string modelId, int blockCount, CancellationToken cancellationToken)
    {
        var raw = await discovery.GetServersAsync(modelId, new BlockRange(0, blockCount), cancellationToken).ConfigureAwait(false);
        return (SwarmLoad.FromAnnouncements(blockCount, raw), raw);
    }

    /// <summary>The balancer's span for a joining server, and why (the window's per-block throughputs before it joins).</summary>
    public static (BlockRange Span, string Why) Choose(IBlockBalancer balancer, SwarmLoad others, int numBlocks)
    {
        var span = balancer.ChooseSpan(others, numBlocks);
        var throughputs = others.BlockThroughputs();
        var window = string.Join(", ", throughputs[span.Start..span.End].Select(t => t.ToString("0.#", CultureInfo.InvariantCulture)));
        return (span, string.Create(CultureInfo.InvariantCulture,
            $"the balancer's choice with {others.Servers.Count} other server(s) joining or online: blocks {span} had {window} tokens/s (swarm throughput {others.Throughput:0.#})"));
    }

    /// <summary>
    /// Where a joining server should be once the servers joining at about the same time are counted: when another server
    /// is loading some of the same blocks, every server still announcing <see cref="ServerState.Joining"/> is placed again, one after the other in peer-id order, each by the
    /// balancer over the online servers and those placed before it. Every joining server computes the same order from
    /// the same view, so servers that chose the same window together spread out instead of all moving (or all staying).
    /// </summary>
    /// <returns>The span to take instead, or null to stay.</returns>
    public static BlockRange? Replay(IBlockBalancer balancer, SwarmLoad swarm, IReadOnlyList<BlockServers> raw, string self, BlockRange span)
    {
        var joiningOthers = raw.SelectMany(b => b.Servers)
            .Where(s => s.State == ServerState.Joining && !string.Equals(s.PeerId, self, StringComparison.Ordinal))
            .ToArray();
        if (!joiningOthers.Any(s => s.Span.Start < span.End && span.Start < s.Span.End))
        {
            return null; // nobody else is loading these blocks: the choice stands
        }

        var joining = joiningOthers.Select(s => s.PeerId).Append(self).ToHashSet(StringComparer.Ordinal);

        var placed = swarm.Servers.Where(s => !joining.Contains(s.PeerId)).ToList();
        var rivals = swarm.Servers.Where(s => joining.Contains(s.PeerId) && !string.Equals(s.PeerId, self, StringComparison.Ordinal))
            .Append(new ServerLoad(self, span, swarm.Servers.FirstOrDefault(s => string.Equals(s.PeerId, self, StringComparison.Ordinal)).Throughput))
            .OrderBy(s => s.PeerId, StringComparer.Ordinal);
        foreach (var server in rivals)
        {
            var chosen = balancer.ChooseSpan(new SwarmLoad(swarm.BlockCount, placed), server.Span.Count);
            if (string.Equals(server.PeerId, self, StringComparison.Ordinal))
            {
                return chosen == span ? null : chosen;
            }

            placed.Add(server with { Span = chosen });
        }

        return null;
    }
}
