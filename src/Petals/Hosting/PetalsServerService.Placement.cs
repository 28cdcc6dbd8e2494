using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Petals.Balancing;
using Petals.Discovery;
using Petals.Execution;
using Petals.Formats;
using Petals.Models;
using Petals.Server;
using Petals.Transport;

namespace Petals.Hosting;

/// <summary>
/// The part of <see cref="PetalsServerService"/> for servers placed by the swarm (no fixed blocks): joining (size,
/// throughput, the balancer's window, the recheck for servers joining together) and rebalancing (the periodic check and
/// the move to another span).
/// </summary>
internal sealed partial class PetalsServerService
{
    /// <summary>How many times a joining server rereads the swarm for servers that chose the same blocks at the same time.</summary>
    private const int MaxJoinRechecks = 3;

    /// <summary>The balancer when the container registered none (<c>UseBlockBalancer</c>).</summary>
    private static readonly GreedyBlockBalancer DefaultBalancer = new();

    /// <summary>
    /// A server placed by the swarm joins: its size from the budget, its throughput (given, cached, or measured on any
    /// window of that size: blocks share one shape), after a random delay the balancer's window, announced joining, and
    /// rechecked for servers that chose overlapping blocks at the same time. Cleans up what it created when it fails.
    /// </summary>
    /// <returns>The placement and announcer, and the executor measured on when it already serves the chosen span.</returns>
    private async Task<(Joined Joined, IBlockExecutor? Executor)> JoinSwarmAsync(
        PetalsServerOptions settings, IBlockExecutorFactory factory, ITransport transport, IPeerDiscovery discovery, IModelWeights weights, string modelId,
        BlockServerOptions serverOptions, PeerAddress address, TimeProvider time, CancellationToken cancellationToken)
    {
        IBlockExecutor? executor = null;
        ServerAnnouncer? announcer = null;
        try
        {
            var (count, sizeWhy) = SwarmPlacement.PlanBlockCount(settings, weights, serverOptions);
            await SwarmPlacement.CheckModelShapeAsync(discovery, transport, modelId, weights.Config, settings.ModelPath, cancellationToken).ConfigureAwait(false);
            var sizeOnly = new BlockRange(0, count);
            var throughput = ObtainThroughput(settings.Throughput, sizeOnly, () => executor ??= factory.Create(weights, sizeOnly), modelId, factory.Name, weights.SpanDType(sizeOnly).ToString(), loggerFactory);
            await Task.Delay(settings.Balancing.MaxJoinDelay * NextDouble(settings.Balancing.Random ?? Random.Shared), time, cancellationToken).ConfigureAwait(false);
            var balancer = Balancer;
            var (swarm, _) = await SwarmPlacement.ReadSwarmAsync(discovery, modelId, weights.Config.NumLayers, cancellationToken).ConfigureAwait(false);
            var (span, spanWhy) = SwarmPlacement.Choose(balancer, swarm.Without(discovery.LocalPeerId), count);
            announcer = CreateAnnouncer(settings, discovery, transport, modelId, weights, span, throughput);
            await announcer.AnnounceJoiningAsync(address, cancellationToken).ConfigureAwait(false);

            // Servers that chose at the same time: the one of each overlapping pair with the greater id yields, until
            // nobody overlaps a server still loading (at most a few rounds; rebalancing catches what is left).
            for (var round = 0; round < MaxJoinRechecks; round++)
            {
                await Task.Delay(settings.Balancing.JoinRecheckDelay, time, cancellationToken).ConfigureAwait(false);
                var (again, raw) = await SwarmPlacement.ReadSwarmAsync(discovery, modelId, weights.Config.NumLayers, cancellationToken).ConfigureAwait(false);
                if (SwarmPlacement.YieldTo(balancer, again, raw, discovery.LocalPeerId, span) is not { } other)
                {
                    break;
                }

                spanWhy = $"{other} instead of {span}: a server with a smaller peer id joined {span} at the same time ({spanWhy})";
                span = other;
                await announcer.RelocateAsync(span, cancellationToken).ConfigureAwait(false);
            }

            PetalsHostingLog.Placed(_logger, span, sizeWhy, spanWhy);
            if (executor is not null && executor.Blocks != span)
            {
                executor.Dispose();
                executor = null;
            }

            var placement = new ServerPlacement { ChosenBySwarm = true, NumBlocks = count, SizeReason = sizeWhy, SpanReason = spanWhy, Span = span };
            return (new Joined(placement, throughput, announcer), executor);
        }
        catch
        {
            if (announcer is not null)
            {
                await announcer.AnnounceOfflineAsync(CancellationToken.None).ConfigureAwait(false);
                await announcer.DisposeAsync().ConfigureAwait(false);
            }

            executor?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Checks the swarm once and moves when the balancer says so (what the balancing loop does every period; tests call
    /// it directly).
    /// </summary>
    /// <returns>The decision, or null when the server is not placed by the swarm, not running, or does not see itself in the swarm yet.</returns>
    internal async Task<BalanceDecision?> BalanceOnceAsync(CancellationToken cancellationToken)
    {
        Running? running;
        BalanceContext? context;
        lock (_lock)
        {
            (running, context) = (_running, _balanceContext);
        }

        if (running?.Announcer is not { } announcer || context is null)
        {
            return null;
        }

        var self = context.Discovery.LocalPeerId;
        var blockCount = running.Weights.Config.NumLayers;
        var (swarm, _) = await SwarmPlacement.ReadSwarmAsync(context.Discovery, running.Server.Options.ModelId, blockCount, cancellationToken).ConfigureAwait(false);
        if (!swarm.Servers.Any(s => string.Equals(s.PeerId, self, StringComparison.Ordinal)))
        {
            PetalsHostingLog.BalanceSkipped(_logger, running.Server.Blocks, "this server's own announcement is not visible in the swarm yet");
            return null;
        }

        var decision = context.Balancer.Evaluate(swarm, self, context.Settings.Balancing.BalanceQuality);
        lock (_lock)
        {
            _placement = _placement! with { LastDecision = decision };
        }

        PetalsHostingLog.BalanceChecked(_logger, running.Server.Blocks, decision.Move, decision.Target, decision.Reason);
        if (decision.Move)
        {
            await MoveAsync(running, context, decision, cancellationToken).ConfigureAwait(false);
        }

        return decision;
    }

    private IBlockBalancer Balancer => services.GetKeyedService<IBlockBalancer>(PetalsServiceKeys.Server) ?? DefaultBalancer;

    private ServerAnnouncer CreateAnnouncer(
        PetalsServerOptions settings, IPeerDiscovery discovery, ITransport transport, string modelId, IModelWeights weights, BlockRange span, ThroughputMeasurement? throughput)
    {
        var announcerOptions = settings.Announcer.Clone();
        announcerOptions.DType = weights.SpanDType(span);
        announcerOptions.TimeProvider = timeProvider ?? announcerOptions.TimeProvider;
        var announcer = new ServerAnnouncer(discovery, transport, modelId, weights.Config.NumLayers, span, announcerOptions, loggerFactory.CreateLogger<ServerAnnouncer>());
        if (throughput is not null)
        {
            announcer.Throughput = throughput.TokensPerSecondPerBlock;
            announcer.ThroughputMethod = throughput.AnnouncedMethod;
        }

        return announcer;
    }

    private static double NextDouble(Random random)
    {
        lock (random)
        {
            return random.NextDouble();
        }
    }

    private async Task BalanceLoopAsync(BalanceContext context, CancellationToken cancellationToken)
    {
        var random = context.Settings.Balancing.Random ?? Random.Shared;
        var period = context.Settings.Balancing.BalancePeriod;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                // Once per period, at a random time in its second half: servers do not check in step, and a gap is filled within a period.
                await Task.Delay(period * (0.5 + (0.5 * NextDouble(random))), context.Time, cancellationToken).ConfigureAwait(false);
                await BalanceOnceAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // A failed check (unreachable DHT, a span that failed to load) must not stop the server: it tries again next period.
            catch (Exception e)
#pragma warning restore CA1031
            {
                PetalsHostingLog.BalanceFailed(_logger, e);
            }
        }
    }

    /// <summary>
    /// Loads the new span and serves it on a new listener, announces the move (the left blocks offline, then the new span
    /// online), stops the old span taking sessions, lets its sessions finish for up to
    /// <see cref="BlockBalancingOptions.MoveDrainTimeout"/>, then stops it.
    /// </summary>
    private async Task MoveAsync(Running running, BalanceContext context, BalanceDecision decision, CancellationToken cancellationToken)
    {
        var target = decision.Target;
        var from = running.Server.Blocks;
        var options = running.Server.Options.Clone();
        options.Blocks = target;
        options.Adapters = LoadAdapters(context.Settings, running.Weights.Config, target, _logger);
        var executor = context.Factory.Create(running.Weights, target);
        BlockServer? server = null;
        try
        {
            var listenAt = MovedListenAddress(PeerAddress.Parse(context.Settings.ListenAddress), Interlocked.Increment(ref _moveCount));
            var listener = await context.Transport.ListenAsync(listenAt, cancellationToken).ConfigureAwait(false);
            server = new BlockServer(executor, options, loggerFactory.CreateLogger<BlockServer>());
            try
            {
                await server.StartAsync(listener, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await listener.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            // From here on the move completes whatever happens: the new span is served and announced before the old one drains.
            await running.Announcer!.AnnounceMovedAsync(server, CancellationToken.None).ConfigureAwait(false);
        }
        catch
        {
            if (server is not null)
            {
                await server.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }

            executor.Dispose();
            throw;
        }

        var moved = running with { Executor = executor, Server = server };
        lock (_lock)
        {
            _running = moved;
            _placement = _placement! with { Span = target, Moves = _placement.Moves + 1 };
        }

        PetalsHostingLog.Moved(_logger, from, target, server.LocalAddress, decision.Reason);
        Moved?.Invoke(this, new ServerMovedEventArgs(from, target, server.LocalAddress, decision));

        // The old span: no new sessions; running ones may finish, then end with the retryable shutting_down.
        running.Server.StopAcceptingSessions($"this server moved to blocks {target}: retry on another server");
        var drainUntil = context.Time.GetTimestamp() + (long)(context.Settings.Balancing.MoveDrainTimeout.TotalSeconds * context.Time.TimestampFrequency);
        while (running.Server.ActiveSessions > 0 && context.Time.GetTimestamp() < drainUntil && !cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), context.Time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break; // The host is stopping: end the old sessions now.
            }
        }

        await running.Server.StopAsync(CancellationToken.None).ConfigureAwait(false);
        running.Executor.Dispose();
    }

    /// <summary>Where a moved span listens: the configured host on a free port (the old span still holds the configured one), or a fresh name for other schemes.</summary>
    private static PeerAddress MovedListenAddress(PeerAddress configured, int move)
    {
        try
        {
            return PeerAddress.FromHostPort(configured.Scheme, configured.Host, 0);
        }
        catch (FormatException)
        {
            return PeerAddress.Create(configured.Scheme, string.Create(CultureInfo.InvariantCulture, $"{configured.Location}~moved-{move}"));
        }
    }

    /// <summary>What joining the swarm gave: the placement, the throughput announced and the announcer (announcing joining).</summary>
    private sealed record Joined(ServerPlacement Placement, ThroughputMeasurement Throughput, ServerAnnouncer Announcer);

    /// <summary>What the balancing loop needs besides the running server.</summary>
    private sealed record BalanceContext(PetalsServerOptions Settings, IBlockExecutorFactory Factory, ITransport Transport, IPeerDiscovery Discovery, IBlockBalancer Balancer, TimeProvider Time);
}
