using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Petals.Client.Routing;
using Petals.Discovery;
using Petals.Health;
using Petals.Models;
using Petals.Protocol;
using Petals.Routing;
using Petals.Transport;

namespace Petals.Client;

/// <summary>
/// The client's view of the servers of one model in the swarm: reads every block's announcements from an
/// <see cref="IPeerDiscovery"/> (on <see cref="StartAsync"/>, every <see cref="SwarmSequenceOptions.RefreshInterval"/>
/// in the background, and on <see cref="RefreshAsync"/>), keeps the online servers, measures round trips to them
/// (<see cref="PingAsync"/>), keeps their health (<see cref="Health"/>: bans of servers that failed, smoothed round
/// trips) and routes the model over them with its <see cref="IRouter"/> (<see cref="RouteInference"/>; segments may be
/// sub-ranges of spans).
/// </summary>
/// <remarks>
/// A server is one peer id across its blocks. Its announcements count only when every unexpired one says
/// <see cref="ServerState.Online"/>, names the same span and address, is stored under a block of that span, and the span
/// ends within the model. Thread-safe: the view is replaced atomically by each refresh, chains are built from the view
/// of the moment, and expired servers drop out of it on the injected clock even between refreshes.
/// </remarks>
public sealed class SwarmSequenceManager : IAsyncDisposable, IDisposable
{
    private readonly IPeerDiscovery _discovery;
    private readonly SwarmSequenceOptions _options;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _refreshGate = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private Snapshot _snapshot = Snapshot.Empty;
    private ITimer? _timer;
    private Task _background = Task.CompletedTask;
    private Exception? _lastRefreshError;
    private long _refreshCount;
    private int _disposed;
    private readonly IRouter _router;
    private volatile Func<CancellationToken, Task<IReadOnlyList<string>>>? _backgroundPing;

    /// <summary>Creates the manager; call <see cref="StartAsync"/> to read the swarm and start refreshing.</summary>
    /// <param name="discovery">Where servers announce their blocks.</param>
    /// <param name="modelId">The model id servers announce (and the client's handshake names).</param>
    /// <param name="blockCount">The model's number of blocks.</param>
    /// <param name="options">Refresh and routing settings; defaults when null.</param>
    /// <param name="timeProvider">The clock for the background refresh and expiry; the system clock when null.</param>
    /// <param name="logger">Where refreshes, refresh failures and excluded servers are logged; none when null.</param>
    /// <param name="router">Chooses the routes; a <see cref="MinLatencyRouter"/> over <see cref="SwarmSequenceOptions.Router"/> when null.</param>
    /// <param name="health">
    /// Takes the failure, success and round-trip reports and gives the bans and round trips routes use; a
    /// <see cref="PeerHealthPolicy"/> over <see cref="SwarmSequenceOptions.Health"/> on <paramref name="timeProvider"/> when null.
    /// </param>
    /// <exception cref="ArgumentException">When the model id is empty, the block count is not positive or an option is out of range.</exception>
    public SwarmSequenceManager(
        IPeerDiscovery discovery,
        string modelId,
        int blockCount,
        SwarmSequenceOptions? options = null,
        TimeProvider? timeProvider = null,
        ILogger? logger = null,
        IRouter? router = null,
        IPeerHealth? health = null)
    {
        ArgumentNullException.ThrowIfNull(discovery);
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        _options = options ?? new SwarmSequenceOptions();
        _options.Validate();
        _discovery = discovery;
        _time = timeProvider ?? TimeProvider.System;
        Logger = logger ?? NullLogger.Instance;
        ModelId = modelId;
        BlockCount = blockCount;
        _router = router ?? new MinLatencyRouter(_options.Router);
        Health = health ?? new PeerHealthPolicy(_options.Health, _time);
    }

    /// <summary>The model id.</summary>
    public string ModelId { get; }

    /// <summary>The model's number of blocks.</summary>
    public int BlockCount { get; }

    /// <summary>The settings.</summary>
    public SwarmSequenceOptions Options => _options;

    /// <summary>The servers' health: where failures, successes and round trips are reported, and the bans routes avoid.</summary>
    public IPeerHealth Health { get; }

    /// <summary>The clock of refreshes, bans and the recovery backoff of sequences over this manager.</summary>
    internal TimeProvider Time => _time;

    /// <summary>The logger (connecting through the manager logs excluded servers here too).</summary>
    internal ILogger Logger { get; }

    /// <summary>Every announcement of the last refresh, one entry per block, in any state (empty before the first refresh).</summary>
    public IReadOnlyList<BlockServers> Announcements => Volatile.Read(ref _snapshot).Blocks;

    /// <summary>The online servers of the last refresh that have not expired since, ordered by span then peer id.</summary>
    public IReadOnlyList<ServerInfo> OnlineServers
    {
        get
        {
            var now = _time.GetUtcNow();
            return [.. Volatile.Read(ref _snapshot).View.Online.Where(s => !SwarmView.IsExpired(s, now))];
        }
    }

    /// <summary>Why servers were left out of the last refresh (contradictory records, a span past the model), one sentence each.</summary>
    public IReadOnlyList<string> IgnoredServers => Volatile.Read(ref _snapshot).View.Ignored;

    /// <summary>When the last successful refresh finished, or null before the first.</summary>
    public DateTimeOffset? LastRefreshedAt => Volatile.Read(ref _snapshot).At;

    /// <summary>How many refreshes have succeeded.</summary>
    public long RefreshCount => Interlocked.Read(ref _refreshCount);

    /// <summary>The failure of the last background refresh, or null when it succeeded (the previous view is kept).</summary>
    public Exception? LastRefreshError => Volatile.Read(ref _lastRefreshError);

    /// <summary>Reads the swarm once and starts the background refresh.</summary>
    /// <param name="cancellationToken">Cancels the first read.</param>
    /// <returns>A task that completes when the first read is in.</returns>
    /// <exception cref="InvalidOperationException">When the manager was already started.</exception>
    /// <remarks>When the first read fails, its exception propagates and the manager may be started again.</remarks>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ITimer timer;
        lock (_gate)
        {
            if (_timer is not null)
            {
                throw new InvalidOperationException($"The sequence manager of model {ModelId} was already started.");
            }

            _timer = timer = _time.CreateTimer(static s => ((SwarmSequenceManager)s!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }

        try
        {
            await RefreshAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            lock (_gate)
            {
                timer.Dispose();
                _timer = null;
            }

            throw;
        }

        timer.Change(_options.RefreshInterval, _options.RefreshInterval);
    }

    /// <summary>Reads every block's announcements now and replaces the view (waits for a refresh already running).</summary>
    /// <param name="cancellationToken">Cancels the read; the previous view is kept.</param>
    /// <returns>A task that completes when the new view is in place.</returns>
    public async Task RefreshAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await _refreshGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var blocks = await _discovery.GetServersAsync(ModelId, new BlockRange(0, BlockCount), cancellationToken).ConfigureAwait(false);
            var now = _time.GetUtcNow();
            var view = SwarmView.Collect(blocks, BlockCount, now);
            Volatile.Write(ref _snapshot, new Snapshot(blocks, view, now));
            ClientLog.Refreshed(Logger, ModelId, view.Online.Count, view.Ignored.Count);
            Volatile.Write(ref _lastRefreshError, null);
            Interlocked.Increment(ref _refreshCount);
        }
        finally
        {
            _refreshGate.Release();
        }
    }

    /// <summary>The peers <see cref="Health"/> bans now after failing (by default each failure doubles the ban, <see cref="PeerHealthOptions.BanBase"/> up to <see cref="PeerHealthOptions.BanCap"/>).</summary>
    public IReadOnlySet<string> BannedPeers => Health.GetBannedPeers();

    /// <summary>The smoothed round-trip times <see cref="Health"/> knows, by peer id.</summary>
    public IReadOnlyDictionary<string, TimeSpan> MeasuredRtts => Health.GetRoundTripTimes();

    /// <summary>
    /// The route with the least expected latency per token for an inference session of <paramref name="batchSize"/>
    /// sequences of up to <paramref name="maxLength"/> tokens over the online servers (see <c>docs/routing.md</c>):
    /// segments may be sub-ranges of their servers' spans; servers are costed with the round-trip times measured by
    /// <see cref="PingAsync"/>; banned peers are used only for blocks nobody else covers; the allow and block lists of
    /// <see cref="SwarmSequenceOptions.Router"/> apply.
    /// </summary>
    /// <param name="batchSize">The session's batch size (at least 1).</param>
    /// <param name="maxLength">The session's maximum length in tokens; 0 when the cache need is not known yet.</param>
    /// <param name="exclude">Peer ids not to use at all (e.g. servers that failed during this connection), or null.</param>
    /// <param name="blocks">The blocks to route (to replace a failed span), or null for every block of the model.</param>
    /// <param name="requiredQuantization">
    /// When set, only servers announcing exactly this weight quantization are used (<see cref="RouteRequest.RequiredQuantization"/>,
    /// <see cref="RemoteSequenceOptions.RequiredQuantization"/>); null: any.
    /// </param>
    /// <returns>The segments in block order; they tile <paramref name="blocks"/> (or <c>0..BlockCount</c>).</returns>
    /// <exception cref="ArgumentOutOfRangeException">When the batch size is below 1, the maximum length negative, or the blocks not a non-empty range of the model.</exception>
    /// <exception cref="RemoteChainException">When some block has no usable server; the message names the blocks (and the required quantization and what the swarm offers, when one is required).</exception>
    /// <param name="requiredAdapter">When set, only servers that hold this adapter (<see cref="ServerInfo.Adapters"/>) are used; null: any.</param>
    public IReadOnlyList<RouteSegment> RouteInference(int batchSize, int maxLength, IReadOnlySet<string>? exclude = null, BlockRange? blocks = null, string? requiredQuantization = null, string? requiredAdapter = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxLength);
        var request = Request(blocks, exclude, (long)batchSize * maxLength) with { RequiredQuantization = requiredQuantization, RequiredAdapter = requiredAdapter };
        return Route(request, exclude, static (router, r) => router.RouteInference(r));
    }

    /// <summary>
    /// A route for one stateless forward (or backward) call: from the first block, a server that has it is drawn at
    /// random with probability proportional to its announced throughput and runs as many blocks as it has, and so on, so
    /// that calls spread over the swarm by throughput. Bans and the allow and block lists apply as for
    /// <see cref="RouteInference"/>.
    /// </summary>
    /// <param name="exclude">Peer ids not to use at all, or null.</param>
    /// <param name="blocks">The blocks to route, or null for every block of the model.</param>
    /// <param name="requiredQuantization">When set, only servers announcing exactly this weight quantization are used; null: any.</param>
    /// <returns>The segments in block order; they tile <paramref name="blocks"/> (or <c>0..BlockCount</c>).</returns>
    /// <exception cref="ArgumentOutOfRangeException">When the blocks are not a non-empty range of the model.</exception>
    /// <exception cref="RemoteChainException">When some block has no usable server; the message names the blocks (and the required quantization and what the swarm offers, when one is required).</exception>
    /// <param name="requiredAdapter">When set, only servers that hold this adapter (<see cref="ServerInfo.Adapters"/>) are used; null: any.</param>
    public IReadOnlyList<RouteSegment> RouteForward(IReadOnlySet<string>? exclude = null, BlockRange? blocks = null, string? requiredQuantization = null, string? requiredAdapter = null) =>
        Route(Request(blocks, exclude, 0) with { RequiredQuantization = requiredQuantization, RequiredAdapter = requiredAdapter }, exclude, static (router, r) => router.RouteForward(r));

    /// <summary>Routes <paramref name="request"/>; a failure names the online servers that <paramref name="exclude"/> left out.</summary>
    private IReadOnlyList<RouteSegment> Route(RouteRequest request, IReadOnlySet<string>? exclude, Func<IRouter, RouteRequest, IReadOnlyList<RouteSegment>> route)
    {
        try
        {
            return route(_router, request);
        }
        catch (RemoteChainException e) when (exclude is { Count: > 0 })
        {
            var excluded = OnlineServers.Where(s => exclude.Contains(s.PeerId)).Select(s => PeerIds.Short(s.PeerId)).Order(StringComparer.Ordinal).ToArray();
            if (excluded.Length == 0)
            {
                throw;
            }

            throw new RemoteChainException($"{e.Message}; excluded: {string.Join(", ", excluded)}", e);
        }
    }

    private RouteRequest Request(BlockRange? blocks, IReadOnlySet<string>? exclude, long cacheTokensNeeded)
    {
        var range = blocks ?? new BlockRange(0, BlockCount);
        if (range.Count <= 0 || range.Start < 0 || range.End > BlockCount)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), range, $"Blocks {range} are not a non-empty range of the model's {BlockCount} blocks.");
        }

        var online = OnlineServers;
        var servers = exclude is null || exclude.Count == 0 ? online : [.. online.Where(s => !exclude.Contains(s.PeerId))];
        return new RouteRequest
        {
            Servers = servers,
            Blocks = range,
            ModelId = ModelId,
            ClientRtts = Health.GetRoundTripTimes(),
            CacheTokensNeeded = cacheTokensNeeded,
            BannedPeers = Health.GetBannedPeers(),
        };
    }

    /// <summary>
    /// Measures the round-trip time to online servers, unmeasured ones first, up to
    /// <see cref="PeerHealthOptions.PingsPerBlock"/> per block and <see cref="PeerHealthOptions.MaxConcurrentPings"/> at a
    /// time: each ping connects with the wire protocol, checks that the server is the announced peer and times one ping
    /// (<see cref="PeerHealthOptions.PingTimeout"/> each). Measurements are reported to <see cref="Health"/> (smoothed into
    /// <see cref="MeasuredRtts"/> by default).
    /// </summary>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="clientPeerId">The peer id the client names in its handshakes.</param>
    /// <param name="cancellationToken">Cancels the pings.</param>
    /// <returns>The peer ids of the servers that could not be pinged, in ordinal order.</returns>
    /// <remarks>
    /// From the first call on, every background refresh (<see cref="SwarmSequenceOptions.RefreshInterval"/>) pings again
    /// the same way, so servers that appear later are measured and estimates follow the network.
    /// </remarks>
    public Task<IReadOnlyList<string>> PingAsync(ITransport transport, string clientPeerId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentException.ThrowIfNullOrEmpty(clientPeerId);
        _backgroundPing = ct => PingCoreAsync(transport, clientPeerId, ct);
        return PingCoreAsync(transport, clientPeerId, cancellationToken);
    }

    private Task<IReadOnlyList<string>> PingCoreAsync(ITransport transport, string clientPeerId, CancellationToken cancellationToken)
    {
        var preamble = new ConnectionPreamble(clientPeerId, ModelId);
        var scheduler = new PingScheduler(Health, async (server, ct) => await PeerProbe.ProbeAsync(transport, server, preamble, ct).ConfigureAwait(false), _options.Health, _time);
        var targets = scheduler.ChooseTargets(OnlineServers, new BlockRange(0, BlockCount));
        return scheduler.PingAsync(targets, cancellationToken);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Task background;
        lock (_gate)
        {
            _timer?.Dispose();
            background = _background;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await background.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The refresh in flight was stopped.
        }

        _stop.Dispose();
    }

    /// <inheritdoc />
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private void OnTimer()
    {
        lock (_gate)
        {
            // One background refresh at a time; a slow swarm skips ticks instead of piling them up.
            if (Volatile.Read(ref _disposed) != 0 || !_background.IsCompleted)
            {
                return;
            }

            _background = Task.Run(BackgroundRefreshAsync);
        }
    }

    private async Task BackgroundRefreshAsync()
    {
        try
        {
            await RefreshAsync(_stop.Token).ConfigureAwait(false);
            if (_backgroundPing is { } ping)
            {
                await ping(_stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // Disposed while refreshing.
        }
        catch (ObjectDisposedException) when (Volatile.Read(ref _disposed) != 0)
        {
            // Disposed before the refresh began.
        }
#pragma warning disable CA1031 // A background refresh must not crash the process: the failure is kept for LastRefreshError and the view stays.
        catch (Exception e)
#pragma warning restore CA1031
        {
            Volatile.Write(ref _lastRefreshError, e);
            ClientLog.RefreshFailed(Logger, ModelId, e);
        }
    }

    private sealed record Snapshot(IReadOnlyList<BlockServers> Blocks, SwarmView View, DateTimeOffset? At)
    {
        public static readonly Snapshot Empty = new([], SwarmView.Empty, null);
    }
}
