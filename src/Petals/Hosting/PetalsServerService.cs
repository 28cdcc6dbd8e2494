using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
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
internal sealed partial class PetalsServerService(
    IServiceProvider services,
    IOptions<PetalsServerOptions> options,
    TimeProvider? timeProvider,
    ILoggerFactory loggerFactory) : IHostedService, IPetalsServer, IAsyncDisposable, IDisposable
{
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

    public string Quantization => Current.Server.Quantization;

    public IReadOnlyDictionary<string, LoraWeights> Adapters => Current.Server.Options.Adapters;

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
            serverOptions.Adapters = LoadAdapters(settings, weights.Config, span, _logger);
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
        var key = ThroughputCache.Key(modelId, span.Count, executorName + (options.ExecutorSettings is { } extra ? ";" + extra : ""), dtype, ThroughputCache.HardwareFingerprint(), options.Quantization);
        if (cache is not null && !options.ForceMeasure && cache.TryGet(key, span) is { } cached)
        {
            return cached;
        }

        var measured = new ThroughputMeter(options, logger).Measure(executor());
        cache?.Store(key, measured);
        return measured;
    }

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
