using Petals.Client;
using Petals.Discovery;
using Petals.Models;
using Petals.Routing;
using Petals.Transport;

namespace Petals.Benchmarks;

/// <summary>
/// A remote sequence pinned to one route: a sequence manager over a static discovery of the route's servers whose router
/// always answers that route. With <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/> 0 it is the chain of the
/// baselines that do not recover (a failure ends the step with the server's error).
/// </summary>
internal sealed class PinnedChain : IAsyncDisposable
{
    private PinnedChain(RemoteTransformerBlocks blocks, SwarmSequenceManager sequence)
    {
        Blocks = blocks;
        Sequence = sequence;
    }

    /// <summary>The connected sequence.</summary>
    public RemoteTransformerBlocks Blocks { get; }

    /// <summary>The private sequence manager it routes with.</summary>
    public SwarmSequenceManager Sequence { get; }

    /// <summary>Connects <paramref name="route"/> (segments tiling the model, sub-ranges of their servers' spans allowed).</summary>
    public static async Task<PinnedChain> ConnectAsync(ITransport transport, IReadOnlyList<RouteSegment> route, ModelConfig config, string modelId, RemoteSequenceOptions options, CancellationToken cancellationToken)
    {
        var servers = route.Select(s => s.Server).DistinctBy(s => s.PeerId, StringComparer.Ordinal);
        var sequence = new SwarmSequenceManager(new StaticPeerDiscovery(modelId, config.NumLayers, servers), modelId, config.NumLayers, router: new Router(route));
        try
        {
            await sequence.StartAsync(cancellationToken).ConfigureAwait(false);
            return new PinnedChain(await RemoteTransformerBlocks.ConnectAsync(transport, sequence, config, options, cancellationToken).ConfigureAwait(false), sequence);
        }
        catch
        {
            await sequence.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await Blocks.DisposeAsync().ConfigureAwait(false);
        await Sequence.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Answers every request for the whole model with the pinned route, and a sub-range with its part of it.</summary>
    private sealed class Router(IReadOnlyList<RouteSegment> route) : IRouter
    {
        public IReadOnlyList<RouteSegment> RouteInference(RouteRequest request) => Cut(request.Blocks);

        public IReadOnlyList<RouteSegment> RouteForward(RouteRequest request) => Cut(request.Blocks);

        private List<RouteSegment> Cut(BlockRange blocks) =>
        [
            .. route
                .Where(s => s.Blocks.End > blocks.Start && s.Blocks.Start < blocks.End)
                .Select(s => s with { Blocks = new BlockRange(Math.Max(s.Blocks.Start, blocks.Start), Math.Min(s.Blocks.End, blocks.End)) }),
        ];
    }
}
