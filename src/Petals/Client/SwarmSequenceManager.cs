using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Petals.Client.Routing;
using Petals.Discovery;
using Petals.Models;
using Petals.Protocol;
using Petals.Routing;
using Petals.Transport;

namespace Petals.Client;

/// <summary>
/// The client's view of the servers of one model in the swarm: reads every block's announcements from an
/// <see cref="IPeerDiscovery"/> (on <see cref="StartAsync"/>, every <see cref="SwarmSequenceOptions.RefreshInterval"/>
/// in the background, and on <see cref="RefreshAsync"/>), keeps the online servers, measures round trips to them
/// (<see cref="PingAsync"/>), keeps bans of servers that failed, and routes the model over them
/// (<see cref="RouteInference"/>; segments may be sub-ranges of spans). <see cref="BuildChain"/> still builds chains of
/// whole spans.
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
    private readonly MinLatencyRouter _router;
    private readonly RttTracker _rtts;
    private readonly PeerBans _bans;
    private volatile Func<CancellationToken, Task<IReadOnlyList<string>>>? _backgroundPing;

    /// <summary>Creates the manager; call <see cref="StartAsync"/> to read the swarm and start refreshing.</summary>
    /// <param name="discovery">Where servers announce their blocks.</param>
    /// <param name="modelId">The model id servers announce (and the client's handshake names).</param>
    /// <param name="blockCount">The model's number of blocks.</param>
    /// <param name="options">Refresh and routing settings; defaults when null.</param>
    /// <param name="timeProvider">The clock for the background refresh and expiry; the system clock when null.</param>
    /// <param name="logger">Where refreshes, refresh failures and excluded servers are logged; none when null.</param>
    /// <exception cref="ArgumentException">When the model id is empty, the block count is not positive or an option is out of range.</exception>
    public SwarmSequenceManager(IPeerDiscovery discovery, string modelId, int blockCount, SwarmSequenceOptions? options = null, TimeProvider? timeProvider = null, ILogger? logger = null)
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
        _router = new MinLatencyRouter(_options.Router);
        _rtts = new RttTracker(_options.Router);
        _bans = new PeerBans(_options.Router, _time);
    }

    /// <summary>The model id.</summary>
    public string ModelId { get; }

    /// <summary>The model's number of blocks.</summary>
    public int BlockCount { get; }

    /// <summary>The settings.</summary>
    public SwarmSequenceOptions Options => _options;

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
            return [.. Volatile.Read(ref _snapshot).View.Online.Where(s => !ChainPlanner.IsExpired(s, now))];
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
            var view = ChainPlanner.Collect(blocks, BlockCount, now);
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

    /// <summary>
    /// Chooses the cheapest chain of online servers whose whole spans tile every block (a server only accepts requests
    /// for its whole span): a shortest path over block boundaries where each server costs
    /// <c>Span.Count / Throughput</c> seconds (<see cref="SwarmSequenceOptions.DefaultThroughput"/> when it announces 0),
    /// plus <see cref="SwarmSequenceOptions.HopCost"/>, plus its announced RTT to the next server of the chain
    /// (<see cref="SwarmSequenceOptions.UnknownRtt"/> when unknown). Ties go to fewer servers, then to the smaller peer id.
    /// </summary>
    /// <param name="exclude">Peer ids not to use (servers that failed or are banned), or null.</param>
    /// <returns>The servers in block order; their spans tile <c>0..BlockCount</c> exactly.</returns>
    /// <exception cref="RemoteChainException">
    /// When no chain exists: the message names the blocks no online server covers (or says that every block is covered
    /// but whole spans cannot tile them) and lists the online spans and excluded servers.
    /// </exception>
    public IReadOnlyList<ServerInfo> BuildChain(IReadOnlySet<string>? exclude = null)
    {
        var online = OnlineServers;
        return ChainPlanner.Plan(online, BlockCount, _options, exclude)
            ?? throw new RemoteChainException(ChainPlanner.DescribeNoChain(ModelId, BlockCount, online, exclude));
    }

    /// <summary>The peers banned now after failing (each failure doubles the ban, <see cref="RouterOptions.BanBase"/> up to <see cref="RouterOptions.BanCap"/>).</summary>
    public IReadOnlySet<string> BannedPeers => _bans.Banned();

    /// <summary>The smoothed round-trip times measured to servers so far, by peer id.</summary>
    public IReadOnlyDictionary<string, TimeSpan> MeasuredRtts => _rtts.Snapshot();

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
    /// <returns>The segments in block order; they tile <paramref name="blocks"/> (or <c>0..BlockCount</c>).</returns>
    /// <exception cref="ArgumentOutOfRangeException">When the batch size is below 1, the maximum length negative, or the blocks not a non-empty range of the model.</exception>
    /// <exception cref="RemoteChainException">When some block has no usable server; the message names the blocks.</exception>
    public IReadOnlyList<RouteSegment> RouteInference(int batchSize, int maxLength, IReadOnlySet<string>? exclude = null, BlockRange? blocks = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxLength);
        return _router.RouteInference(Request(blocks, exclude, (long)batchSize * maxLength));
    }

    /// <summary>
    /// A route for one stateless forward (or backward) call: from the first block, a server that has it is drawn at
    /// random with probability proportional to its announced throughput and runs as many blocks as it has, and so on, so
    /// that calls spread over the swarm by throughput. Bans and the allow and block lists apply as for
    /// <see cref="RouteInference"/>.
    /// </summary>
    /// <param name="exclude">Peer ids not to use at all, or null.</param>
    /// <param name="blocks">The blocks to route, or null for every block of the model.</param>
    /// <returns>The segments in block order; they tile <paramref name="blocks"/> (or <c>0..BlockCount</c>).</returns>
    /// <exception cref="ArgumentOutOfRangeException">When the blocks are not a non-empty range of the model.</exception>
    /// <exception cref="RemoteChainException">When some block has no usable server; the message names the blocks.</exception>
    public IReadOnlyList<RouteSegment> RouteForward(IReadOnlySet<string>? exclude = null, BlockRange? blocks = null) =>
        _router.RouteForward(Request(blocks, exclude, 0));

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
            ClientRtts = _rtts.Snapshot(),
            CacheTokensNeeded = cacheTokensNeeded,
            BannedPeers = _bans.Banned(),
        };
    }

    /// <summary>
    /// Measures the round-trip time to online servers, unmeasured ones first, up to
    /// <see cref="RouterOptions.PingsPerBlock"/> per block and <see cref="RouterOptions.MaxConcurrentPings"/> at a time:
    /// each ping connects with the wire protocol, checks that the server is the announced peer and times one ping
    /// (<see cref="RouterOptions.PingTimeout"/> each). Measurements are smoothed into <see cref="MeasuredRtts"/>.
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
        var scheduler = new PingScheduler(_rtts, (server, ct) => PingOneAsync(transport, new ConnectionPreamble(clientPeerId, ModelId), server, ct), _options.Router, _time);
        var targets = scheduler.ChooseTargets(OnlineServers, new BlockRange(0, BlockCount));
        return scheduler.PingAsync(targets, cancellationToken);
    }

    /// <summary>Records that <paramref name="peerId"/> failed: it is banned for a while (doubling with each failure).</summary>
    internal TimeSpan RecordFailure(string peerId) => _bans.RecordFailure(peerId);

    /// <summary>Records that <paramref name="peerId"/> served: its ban and failure count are cleared.</summary>
    internal void RecordSuccess(string peerId) => _bans.RecordSuccess(peerId);

    private static async ValueTask<TimeSpan> PingOneAsync(ITransport transport, ConnectionPreamble preamble, ServerInfo server, CancellationToken cancellationToken)
    {
        var connection = await ProtocolConnection.ConnectAsync(transport, server.Address, preamble, null, cancellationToken).ConfigureAwait(false);
        Task? run = null;
        try
        {
            if (!string.Equals(connection.Remote.PeerId, server.PeerId, StringComparison.Ordinal))
            {
                throw new RemoteChainException(
                    $"The server at {server.Address} introduced itself as '{connection.Remote.PeerId}', not as the announced '{server.PeerId}'.");
            }

            run = connection.RunAsync(IgnoreCallsHandler.Instance, cancellationToken);
            return await connection.PingAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            if (run is not null)
            {
                try
                {
                    await run.ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or TransportException or ProtocolException or ObjectDisposedException)
                {
                    // The read loop ends with the connection just closed.
                }
            }
        }
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

    /// <summary>A ping connection makes no calls; anything a server sends on a stream is ignored.</summary>
    private sealed class IgnoreCallsHandler : IProtocolMessageHandler
    {
        public static readonly IgnoreCallsHandler Instance = new();

        public ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure)
        {
        }
    }

    private sealed record Snapshot(IReadOnlyList<BlockServers> Blocks, ChainPlanner.View View, DateTimeOffset? At)
    {
        public static readonly Snapshot Empty = new([], new ChainPlanner.View([], []), null);
    }
}
