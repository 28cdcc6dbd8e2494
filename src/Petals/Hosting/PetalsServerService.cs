using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using System.Globalization;
using Petals.Balancing;
using Petals.Discovery;
using Petals.Execution;
using Petals.Formats;
using Petals.Models;
using Petals.Server;
using Petals.Transport;

namespace Petals.Hosting;

/// <summary>
/// The hosted service registered by <see cref="PetalsServiceCollectionExtensions.AddPetalsServer"/>, and the one place a
/// server starts and stops (<c>petals serve</c> runs it too). Start: listen, announce joining, load the span, measure
/// the throughput, serve, announce online. Stop: announce offline, drain (sessions end with <c>shutting_down</c>,
/// caches are freed), stop, release the executor and the weights. Without a discovery the announcement steps are
/// skipped. Started at most once.
/// </summary>
internal sealed class PetalsServerService(
    IServiceProvider services,
    IOptions<PetalsServerOptions> options,
    TimeProvider? timeProvider,
    ILoggerFactory loggerFactory) : IHostedService, IPetalsServer, IAsyncDisposable, IDisposable
{
    /// <summary>How many times a joining server rereads the swarm for servers that chose the same blocks at the same time.</summary>
    private const int MaxJoinRechecks = 3;

    /// <summary>The balancer when the container registered none (<c>UseBlockBalancer</c>).</summary>
    private static readonly GreedyBlockBalancer DefaultBalancer = new();

    /// <summary>The peer id of <see cref="BlockServerOptions"/> when nobody set one.</summary>
    private static readonly string DefaultPeerId = new BlockServerOptions().PeerId;

    private readonly ILogger _logger = loggerFactory.CreateLogger<PetalsServerService>();
    private readonly Lock _lock = new();
    private Running? _running;
    private BlockServerStatistics? _final;
    private ServerAnnouncerStatistics? _finalAnnouncements;
    private ThroughputMeasurement? _finalThroughput;
    private ServerPlacement? _placement;
    private CancellationTokenSource? _balancing;
    private Task? _balanceLoop;
    private BalanceContext? _balanceContext;
    private int _moveCount;
    private bool _started;

    public bool IsRunning
    {
        get
        {
            lock (_lock)
            {
                return _running is not null;
            }
        }
    }

    public PeerAddress LocalAddress => Current.Server.LocalAddress;

    public string ModelId => Current.Server.Options.ModelId;

    public BlockRange Blocks => Current.Server.Blocks;

    public string PeerId => Current.Server.Options.PeerId;

    public ThroughputMeasurement? Throughput
    {
        get
        {
            lock (_lock)
            {
                return _running is { } running ? running.Throughput
                    : _final is not null ? _finalThroughput
                    : throw new InvalidOperationException("The Petals server was never started: start the host (or the hosted service) first.");
            }
        }
    }

    private Running Current
    {
        get
        {
            lock (_lock)
            {
                return _running ?? throw new InvalidOperationException(_started
                    ? "The Petals server has stopped."
                    : "The Petals server is not started: start the host (or the hosted service) first.");
            }
        }
    }

    public BlockServerStatistics GetStatistics()
    {
        lock (_lock)
        {
            return _running?.Server.GetStatistics() ?? _final
                ?? throw new InvalidOperationException("The Petals server was never started: start the host (or the hosted service) first.");
        }
    }

    public ServerAnnouncerStatistics? GetAnnouncerStatistics()
    {
        lock (_lock)
        {
            if (_running is { } running)
            {
                return running.Announcer?.GetStatistics();
            }

            return _final is not null ? _finalAnnouncements
                : throw new InvalidOperationException("The Petals server was never started: start the host (or the hosted service) first.");
        }
    }

    public ServerPlacement Placement
    {
        get
        {
            lock (_lock)
            {
                return _placement ?? throw new InvalidOperationException("The Petals server was never started: start the host (or the hosted service) first.");
            }
        }
    }

    public event EventHandler<ServerMovedEventArgs>? Moved;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (_started)
            {
                throw new InvalidOperationException("The Petals server was already started; a stopped one cannot start again (build a new host).");
            }

            _started = true;
        }

        var settings = options.Value; // Validates (OptionsValidationException) unless the host already did.
        var factory = services.GetKeyedService<IBlockExecutorFactory>(PetalsServiceKeys.Server)
            ?? throw new InvalidOperationException(PetalsServerOptionsValidator.MissingExecutor);
        var transport = services.GetKeyedService<ITransport>(PetalsServiceKeys.Server)
            ?? throw new InvalidOperationException(PetalsServerOptionsValidator.MissingTransport);
        var started = Stopwatch.StartNew();
        var discovery = services.GetKeyedService<IPeerDiscovery>(PetalsServiceKeys.Server);
        if (settings.Blocks is null && discovery is null)
        {
            throw new InvalidOperationException(PetalsServerOptionsValidator.MissingDiscoveryForPlacement);
        }

        var spanText = settings.Blocks is { } requested ? requested.ToString() : "placed by the swarm";
        PetalsHostingLog.ServerStarting(_logger, settings.ModelPath, spanText, factory.Name, transport.Name);
        IModelWeights? weights = null;
        IBlockExecutor? executor = null;
        BlockServer? server = null;
        ITransportListener? listener = null;
        ServerAnnouncer? announcer = null;
        var span = settings.Blocks ?? default;
        try
        {
            // Opening maps the file and reads the header; the executor below reads the span's tensors (the slow part).
            weights = ModelLoader.Open(settings.ModelPath);
            if (settings.Blocks is { } fixedSpan && fixedSpan.End > weights.Config.NumLayers)
            {
                throw new OptionsValidationException(
                    nameof(PetalsServerOptions),
                    typeof(PetalsServerOptions),
                    [$"PetalsServerOptions.Blocks {fixedSpan} goes past the model's {weights.Config.NumLayers} blocks ({settings.ModelPath})."]);
            }

            var modelId = settings.ModelId ?? ModelIdentity.Compute(settings.ModelPath, weights.Config);
            var serverOptions = settings.Server.Clone();
            serverOptions.ModelId = modelId;
            serverOptions.TimeProvider = timeProvider ?? serverOptions.TimeProvider;
            var time = serverOptions.TimeProvider;
            ServerPlacement placement;
            ThroughputMeasurement? throughput = null;

            // Listen first: with a discovery the address is announced (joining) while the blocks load.
            listener = await transport.ListenAsync(PeerAddress.Parse(settings.ListenAddress), cancellationToken).ConfigureAwait(false);
            ProvenPeerId(listener.LocalAddress, serverOptions, discovery);
            if (discovery is not null)
            {
                serverOptions.PeerId = discovery.LocalPeerId;
            }

            if (settings.Blocks is null)
            {
                Joined joined;
                (joined, executor) = await JoinSwarmAsync(settings, factory, transport, discovery!, weights, modelId, serverOptions, listener.LocalAddress, time, cancellationToken).ConfigureAwait(false);
                (span, placement, throughput, announcer) = (joined.Placement.Span, joined.Placement, joined.Throughput, joined.Announcer);
            }
            else
            {
                placement = new ServerPlacement { ChosenBySwarm = false, NumBlocks = span.Count, SizeReason = "blocks given", SpanReason = "blocks given", Span = span };
                if (discovery is not null)
                {
                    announcer = CreateAnnouncer(settings, discovery, transport, modelId, weights, span, null);
                    await announcer.AnnounceJoiningAsync(listener.LocalAddress, cancellationToken).ConfigureAwait(false);
                }
            }

            serverOptions.Blocks = span;
            executor ??= factory.Create(weights, span);
            if (announcer is not null && throughput is null)
            {
                throughput = ObtainThroughput(settings.Throughput, span, () => executor, modelId, factory.Name, weights.SpanDType(span).ToString(), loggerFactory);
                announcer.Throughput = throughput.TokensPerSecondPerBlock;
                announcer.ThroughputMethod = throughput.AnnouncedMethod;
            }

            server = new BlockServer(executor, serverOptions, loggerFactory.CreateLogger<BlockServer>());
            await server.StartAsync(listener, cancellationToken).ConfigureAwait(false);
            listener = null; // The server owns it now.
            if (announcer is not null)
            {
                await announcer.AnnounceOnlineAsync(server, cancellationToken).ConfigureAwait(false);
            }

            var running = new Running(weights, executor, server, announcer, throughput, settings.OfflineAnnounceTimeout);
            lock (_lock)
            {
                _running = running;
                _placement = placement;
            }

            PetalsHostingLog.ServerStarted(_logger, server.LocalAddress, modelId, span, serverOptions.CacheTokens, (long)started.Elapsed.TotalMilliseconds);
            if (placement.ChosenBySwarm)
            {
                var context = new BalanceContext(settings, factory, transport, discovery!, Balancer, time);
                lock (_lock)
                {
                    _balanceContext = context;
                }

                if (settings.Balancing.BalancePeriod != Timeout.InfiniteTimeSpan)
                {
                    _balancing = new CancellationTokenSource();
                    _balanceLoop = Task.Run(() => BalanceLoopAsync(context, _balancing.Token), CancellationToken.None);
                }
            }
        }
        catch (Exception e)
        {
            PetalsHostingLog.ServerStartFailed(_logger, e, settings.ModelPath, span.Count > 0 ? span.ToString() : spanText);
            if (announcer is not null)
            {
                await announcer.AnnounceOfflineAsync(CancellationToken.None).ConfigureAwait(false);
                await announcer.DisposeAsync().ConfigureAwait(false);
            }

            if (listener is not null)
            {
                await listener.DisposeAsync().ConfigureAwait(false);
            }

            if (server is not null)
            {
                await server.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }

            executor?.Dispose();
            weights?.Dispose();
            throw;
        }
    }

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
    /// Loads the new span and serves it on a new listener, announces it (then the old blocks offline), stops the old span
    /// taking sessions, lets its sessions finish for up to <see cref="BlockBalancingOptions.MoveDrainTimeout"/>, then stops it.
    /// </summary>
    private async Task MoveAsync(Running running, BalanceContext context, BalanceDecision decision, CancellationToken cancellationToken)
    {
        var target = decision.Target;
        var from = running.Server.Blocks;
        var options = running.Server.Options.Clone();
        options.Blocks = target;
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

            // From here on the move completes whatever happens: the new span is announced before the old one goes.
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

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        Running? running;
        lock (_lock)
        {
            running = _running;
            _running = null;
        }

        if (running is null)
        {
            return;
        }

        if (_balancing is { } balancing)
        {
            // No move starts or half-finishes while the server stops; a move in progress completes first.
            await balancing.CancelAsync().ConfigureAwait(false);
            await _balanceLoop!.ConfigureAwait(false);
            balancing.Dispose();
            lock (_lock)
            {
                running = _running ?? running;
                _running = null;
            }
        }

        var address = running.Server.LocalAddress;
        PetalsHostingLog.ServerStopping(_logger, address);
        if (running.Announcer is { } announcer)
        {
            // Offline first: clients stop routing here while the open sessions still end cleanly. Bounded: the record
            // expires on its own.
            using var offline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            offline.CancelAfter(running.OfflineAnnounceTimeout);
            try
            {
                await announcer.AnnounceOfflineAsync(offline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                PetalsHostingLog.OfflineAnnounceAbandoned(_logger, address, running.OfflineAnnounceTimeout.TotalSeconds);
            }

            await announcer.DisposeAsync().ConfigureAwait(false);
        }

        var stopping = running.Server.StopAsync(CancellationToken.None);
        try
        {
            await stopping.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The host gave up waiting: the shutdown goes on, and the weights are released once it is over.
            _ = stopping.ContinueWith(static (_, state) => ((Running)state!).Release(), running, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            throw;
        }

        var stats = running.Server.GetStatistics();
        lock (_lock)
        {
            _final = stats;
            _finalAnnouncements = running.Announcer?.GetStatistics();
            _finalThroughput = running.Throughput;
        }

        running.Release();
        PetalsHostingLog.ServerStopped(_logger, address, stats.ConnectionsAccepted, stats.SessionsOpened, stats.InferenceSteps, stats.ForwardCalls, stats.TokensProcessed);
    }

    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);

    /// <summary>For containers disposed synchronously: stops the server if it still runs, blocking until it has.</summary>
    public void Dispose() => StopAsync(CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>The figure to announce: given, else cached (unless forced), else measured (on <paramref name="executor"/>'s executor) and cached.</summary>
    private static ThroughputMeasurement ObtainThroughput(
        ThroughputMeterOptions options, BlockRange span, Func<IBlockExecutor> executor, string modelId, string executorName, string dtype, ILoggerFactory loggerFactory)
    {
        if (options.Given is { } given)
        {
            return new ThroughputMeasurement(span, given, TimeSpan.FromSeconds(span.Count / given), 0)
            {
                Rounds = 0,
                Source = "given",
                Method = "given",
            };
        }

        var logger = loggerFactory.CreateLogger<ThroughputMeter>();
        var path = options.CachePath ?? ThroughputCache.DefaultPath();
        var cache = path.Length == 0 ? null : new ThroughputCache(path, logger);
        var key = ThroughputCache.Key(modelId, span.Count, executorName + (options.ExecutorSettings is { } extra ? ";" + extra : ""), dtype, ThroughputCache.HardwareFingerprint());
        if (cache is not null && !options.ForceMeasure && cache.TryGet(key, span) is { } cached)
        {
            return cached;
        }

        var measured = new ThroughputMeter(options, logger).Measure(executor());
        cache?.Store(key, measured);
        return measured;
    }

    /// <summary>What joining the swarm gave: the placement, the throughput announced and the announcer (announcing joining).</summary>
    private sealed record Joined(ServerPlacement Placement, ThroughputMeasurement Throughput, ServerAnnouncer Announcer);

    /// <summary>What the balancing loop needs besides the running server.</summary>
    private sealed record BalanceContext(PetalsServerOptions Settings, IBlockExecutorFactory Factory, ITransport Transport, IPeerDiscovery Discovery, IBlockBalancer Balancer, TimeProvider Time);

    /// <summary>What a running server holds, released in reverse order once the server has stopped.</summary>
    private sealed record Running(IModelWeights Weights, IBlockExecutor Executor, BlockServer Server, ServerAnnouncer? Announcer, ThroughputMeasurement? Throughput, TimeSpan OfflineAnnounceTimeout)
    {
        public void Release()
        {
            Executor.Dispose();
            Weights.Dispose();
        }
    }

    /// <summary>
    /// Where the listener proves a key (its address names a 64-digit key id, as <c>tls://</c> does), clients check the
    /// handshake's peer id against that key: without a discovery, a server left at the default peer id is named by its
    /// key's short id; with one, a discovery id that is not the key's is logged, since clients would refuse the server.
    /// </summary>
    private void ProvenPeerId(PeerAddress listening, BlockServerOptions serverOptions, IPeerDiscovery? discovery)
    {
        if (listening.PeerId is not { Length: AuthenticatedPeer.PeerIdLength } keyId || !keyId.All(char.IsAsciiHexDigit))
        {
            return;
        }

        var key = new AuthenticatedPeer(keyId);
        if (discovery is null && serverOptions.PeerId == DefaultPeerId)
        {
            serverOptions.PeerId = key.ShortPeerId;
        }
        else if (!key.IsIdentifiedBy(discovery?.LocalPeerId ?? serverOptions.PeerId))
        {
            PetalsHostingLog.PeerIdNotKey(_logger, listening, discovery?.LocalPeerId ?? serverOptions.PeerId, key.PeerId);
        }
    }
}
