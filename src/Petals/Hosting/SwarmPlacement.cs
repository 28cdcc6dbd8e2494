using System.Globalization;
using Petals.Balancing;
using Petals.Client;
using Petals.Discovery;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Transport;

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

    /// <summary>The most online servers of the model asked for their shape before joining.</summary>
    private const int ShapeProbes = 2;

    /// <summary>
    /// Refuses to join a swarm that runs <paramref name="modelId"/> in another shape: its model index announces another
    /// number of blocks, or an online server of it (up to two are asked, over the wire protocol) runs another hidden size.
    /// Servers that do not answer are skipped: the check must not keep a server out of a swarm whose other servers died.
    /// </summary>
    /// <exception cref="InvalidOperationException">The shapes differ; the message names both.</exception>
    public static async Task CheckModelShapeAsync(
        IPeerDiscovery discovery, ITransport transport, string modelId, ModelConfig config, string source, CancellationToken cancellationToken)
    {
        var models = await discovery.GetModelsAsync(cancellationToken).ConfigureAwait(false);
        foreach (var model in models)
        {
            if (string.Equals(model.ModelId, modelId, StringComparison.Ordinal) && model.BlockCount != config.NumLayers)
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                    $"the swarm's {model.ServerCount} server(s) of model '{modelId}' announce {model.BlockCount} blocks, but {source} has {config.NumLayers}: not joined (another model under the same id? check --model-id)."));
            }
        }

        var servers = (await discovery.GetServersAsync(modelId, new BlockRange(0, config.NumLayers), cancellationToken).ConfigureAwait(false))
            .SelectMany(b => b.Servers)
            .Where(s => s.State == ServerState.Online && !string.Equals(s.PeerId, discovery.LocalPeerId, StringComparison.Ordinal))
            .DistinctBy(s => s.PeerId, StringComparer.Ordinal)
            .Take(ShapeProbes)
            .ToArray();
        var probe = new RemoteSequenceOptions { ConnectTimeout = TimeSpan.FromSeconds(5) };
        foreach (var server in servers)
        {
            InfoResponse info;
            try
            {
                await using var connection = await RemoteSpanConnection.ConnectAsync(
                    transport, server.Address, new ConnectionPreamble(discovery.LocalPeerId, modelId), probe, cancellationToken).ConfigureAwait(false);
                info = connection.Info;
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is TransportException or ProtocolException or IOException or TimeoutException or ObjectDisposedException)
            {
                continue; // gone or unreachable: another server, or none, decides
            }

            if (info.HiddenSize != config.HiddenSize)
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                    $"server {server.PeerId} of model '{modelId}' at {server.Address} runs hidden size {info.HiddenSize}, but {source} has {config.HiddenSize}: not joined (another model under the same id? check --model-id)."));
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
    /// Whether a joining server should leave its span because another server announced joining on overlapping blocks at
    /// about the same time: of each such pair only the one with the greater peer id yields (so one of them stays put), and
    /// it takes the best span for the swarm as it now stands, the other joining servers where they are.
    /// </summary>
    /// <returns>The span to take instead, or null to stay.</returns>
    public static BlockRange? YieldTo(IBlockBalancer balancer, SwarmLoad swarm, IReadOnlyList<BlockServers> raw, string self, BlockRange span)
    {
        var rival = raw.SelectMany(b => b.Servers).Any(s =>
            s.State == ServerState.Joining
            && string.CompareOrdinal(s.PeerId, self) < 0
            && s.Span.Start < span.End && span.Start < s.Span.End);
        if (!rival)
        {
            return null;
        }

        var best = balancer.ChooseSpan(swarm.Without(self), span.Count);
        return best == span ? null : best;
    }
}
