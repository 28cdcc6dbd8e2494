// Over 500 lines on purpose: the state machine of one server's announcements (joining, online, offline, periodic
// republication that a state change preempts, expirations that always move forward) shares one lock and one set of
// fields; the measuring and probing it needs live in ThroughputMeter and PeerProbe.
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Petals.Discovery;
using Petals.Health;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Server;

/// <summary>
/// Announces a block server's span in the swarm's <see cref="IPeerDiscovery"/> through its life: <see cref="ServerState.Joining"/>
/// while the weights load (<see cref="AnnounceJoiningAsync"/>), <see cref="ServerState.Online"/> once it listens
/// (<see cref="AnnounceOnlineAsync"/>) and <see cref="ServerState.Offline"/> when it stops (<see cref="AnnounceOfflineAsync"/>,
/// before the server closes its sessions). In between it republishes every <see cref="ServerAnnouncerOptions.AnnounceInterval"/>
/// with the free cache tokens of the moment and fresh round-trip times to the servers of the next block.
/// </summary>
/// <remarks>
/// A state change is announced at once (a periodic republication in progress is canceled in its favour). A failed
/// announcement is logged, counted (<see cref="GetStatistics"/>) and retried at the next period; it never throws into
/// the server. Every announcement expires strictly later than the one before it, so the DHT never takes a new state
/// for a replay of an old one. Time comes from <see cref="ServerAnnouncerOptions.TimeProvider"/>. Thread-safe.
/// </remarks>
public sealed class ServerAnnouncer : IAsyncDisposable
{
    /// <summary>The longest model id an announcer accepts, in UTF-8 bytes (<see cref="AnnouncementLimits.MaxModelIdBytes"/>).</summary>
    public const int MaxModelIdBytes = AnnouncementLimits.MaxModelIdBytes;

    /// <summary>The largest model (in blocks) an announcer accepts (<see cref="AnnouncementLimits.MaxBlockCount"/>).</summary>
    public const int MaxBlockCount = AnnouncementLimits.MaxBlockCount;

    private readonly IPeerDiscovery _discovery;
    private readonly ITransport _transport;
    private readonly ServerAnnouncerOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _announcing = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly HashSet<Task> _background = [];
    private ITimer? _timer;
    private CancellationTokenSource? _periodic;
    private BlockServer? _server;
    private BlockRange _span;
    private PeerAddress _address;
    private ServerState _state = ServerState.Offline;
    private bool _announcedAny;
    private bool _disposed;
    private const int MaxThroughputMethodBytes = 128; // the discovery codec's limit on announced text
    private string? _throughputMethod;
    private double _throughput;
    private IReadOnlyDictionary<string, TimeSpan> _rtts = new Dictionary<string, TimeSpan>();
    private DateTimeOffset _lastExpiresAt = DateTimeOffset.MinValue;
    private DateTimeOffset? _lastAnnouncedAt;
    private long _announcements;
    private long _failures;
    private long _skipped;

    /// <summary>Creates an announcer for the blocks <paramref name="span"/> of <paramref name="modelId"/>; it announces nothing until <see cref="AnnounceJoiningAsync"/> or <see cref="AnnounceOnlineAsync"/>.</summary>
    /// <param name="discovery">Where to announce; its <see cref="IPeerDiscovery.LocalPeerId"/> is the announced peer id (and must be the server's wire peer id).</param>
    /// <param name="transport">The transport to reach the servers of the next block with (for round-trip times).</param>
    /// <param name="modelId">The model id (the handshake's; the prefix of the block keys).</param>
    /// <param name="blockCount">The model's number of blocks.</param>
    /// <param name="span">The blocks the server runs.</param>
    /// <param name="options">The settings; defaults if null.</param>
    /// <param name="logger">Where to log; none by default.</param>
    /// <exception cref="ArgumentException">The model id is empty or over <see cref="MaxModelIdBytes"/> UTF-8 bytes, the block count is not 1 to <see cref="MaxBlockCount"/>, the span is empty or goes past <paramref name="blockCount"/>, or an option is invalid.</exception>
    public ServerAnnouncer(
        IPeerDiscovery discovery,
        ITransport transport,
        string modelId,
        int blockCount,
        BlockRange span,
        ServerAnnouncerOptions? options = null,
        ILogger<ServerAnnouncer>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(discovery);
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        // A longer id would pass here and then fail every announcement in the background, leaving the server undiscoverable.
        if (System.Text.Encoding.UTF8.GetByteCount(modelId) > MaxModelIdBytes)
        {
            throw new ArgumentException(
                $"The model id '{modelId}' takes {System.Text.Encoding.UTF8.GetByteCount(modelId)} UTF-8 bytes; an announced model id takes at most {MaxModelIdBytes} (the DHT's block keys must stay within 256 bytes).",
                nameof(modelId));
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(blockCount, MaxBlockCount);
        if (span.Count <= 0 || span.Start < 0 || span.End > blockCount)
        {
            throw new ArgumentException($"The span {span} is empty or goes past the model's {blockCount} blocks.", nameof(span));
        }

        _options = options ?? new ServerAnnouncerOptions();
        _options.Validate();
        _discovery = discovery;
        _transport = transport;
        _time = _options.TimeProvider;
        _logger = logger ?? (ILogger)NullLogger.Instance;
        ModelId = modelId;
        BlockCount = blockCount;
        _span = span;
    }

    /// <summary>The model id announced.</summary>
    public string ModelId { get; }

    /// <summary>The model's number of blocks.</summary>
    public int BlockCount { get; }

    /// <summary>The blocks announced (changed by <see cref="RelocateAsync"/> and <see cref="AnnounceMovedAsync"/>).</summary>
    public BlockRange Span
    {
        get
        {
            lock (_gate)
            {
                return _span;
            }
        }
    }

    /// <summary>The settings.</summary>
    public ServerAnnouncerOptions Options => _options;

    /// <summary>The peer id announced (the discovery's <see cref="IPeerDiscovery.LocalPeerId"/>).</summary>
    public string PeerId => _discovery.LocalPeerId;

    /// <summary>The state announced last (or being announced); <see cref="ServerState.Offline"/> before the first announcement.</summary>
    public ServerState State
    {
        get
        {
            lock (_gate)
            {
                return _state;
            }
        }
    }

    /// <summary>How <see cref="Throughput"/> was obtained (<see cref="ServerInfo.ThroughputMethod"/>), or null; at most 128 UTF-8 bytes.</summary>
    /// <exception cref="ArgumentException">When set to more than 128 UTF-8 bytes.</exception>
    public string? ThroughputMethod
    {
        get => Volatile.Read(ref _throughputMethod);
        set
        {
            if (value is not null && System.Text.Encoding.UTF8.GetByteCount(value) > MaxThroughputMethodBytes)
            {
                throw new ArgumentException($"The throughput method is {System.Text.Encoding.UTF8.GetByteCount(value)} UTF-8 bytes; at most {MaxThroughputMethodBytes}.", nameof(value));
            }

            Volatile.Write(ref _throughputMethod, value);
        }
    }

    /// <summary>The announced throughput in tokens per second per block (0 until set, e.g. from a <see cref="ThroughputMeter"/> measurement).</summary>
    /// <exception cref="ArgumentOutOfRangeException">When set to a negative, infinite or NaN value.</exception>
    public double Throughput
    {
        get => Volatile.Read(ref _throughput);
        set
        {
            if (!double.IsFinite(value) || value < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "The throughput must be a finite, non-negative number of tokens per second.");
            }

            Volatile.Write(ref _throughput, value);
        }
    }

    /// <summary>The round-trip times to servers of the next block measured for the last announcement, by peer id.</summary>
    public IReadOnlyDictionary<string, TimeSpan> NextServerRtts
    {
        get
        {
            lock (_gate)
            {
                return _rtts;
            }
        }
    }

    /// <summary>
    /// Announces <see cref="ServerState.Joining"/> (the server is loading its blocks) and starts the periodic republication.
    /// </summary>
    /// <param name="address">Where the server will accept connections (e.g. its bound listener's address); <see cref="ServerAnnouncerOptions.AnnounceHost"/> replaces its host.</param>
    /// <param name="cancellationToken">Cancels the announcement.</param>
    /// <returns>Whether at least one block's announcement was accepted by the discovery (a failure is logged and retried at the next period).</returns>
    /// <exception cref="ArgumentException">The address is empty, or <see cref="ServerAnnouncerOptions.AnnounceHost"/> is set and the address has no <c>host:port</c>.</exception>
    /// <exception cref="ObjectDisposedException">The announcer is disposed.</exception>
    /// <exception cref="InvalidOperationException">The announcer already announced <see cref="ServerState.Offline"/> (it does not come back).</exception>
    public Task<bool> AnnounceJoiningAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        var announced = ToAnnounced(address);
        return ChangeStateAsync(ServerState.Joining, () => _address = announced, cancellationToken);
    }

    /// <summary>
    /// Announces <see cref="ServerState.Online"/> at <paramref name="server"/>'s listening address (host replaced by
    /// <see cref="ServerAnnouncerOptions.AnnounceHost"/> when set), with its free cache tokens and the round-trip times to
    /// the next block's servers; from now on republications read the free cache tokens from <paramref name="server"/>.
    /// Starts the periodic republication if <see cref="AnnounceJoiningAsync"/> did not.
    /// </summary>
    /// <param name="server">The started block server; it must serve <see cref="Span"/> of <see cref="ModelId"/> under the peer id <see cref="PeerId"/>.</param>
    /// <param name="cancellationToken">Cancels the announcement.</param>
    /// <returns>Whether at least one block's announcement was accepted by the discovery.</returns>
    /// <exception cref="ArgumentException">The server is not started, serves other blocks or another model, or uses another peer id.</exception>
    /// <exception cref="ObjectDisposedException">The announcer is disposed.</exception>
    /// <exception cref="InvalidOperationException">The announcer already announced <see cref="ServerState.Offline"/>.</exception>
    public Task<bool> AnnounceOnlineAsync(BlockServer server, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(server);
        if (server.Blocks != Span)
        {
            throw new ArgumentException($"The server serves blocks {server.Blocks}, not the announced blocks {Span} of '{ModelId}'.", nameof(server));
        }

        CheckServer(server);
        var announced = ToAnnounced(server.LocalAddress);
        return ChangeStateAsync(ServerState.Online, () => (_server, _address) = (server, announced), cancellationToken);
    }

    /// <summary>
    /// Stops the periodic republication and announces <see cref="ServerState.Offline"/> (call it before stopping the
    /// server, so clients stop routing to it while its sessions still end cleanly). Does nothing if nothing was
    /// announced yet or it was already called.
    /// </summary>
    /// <param name="cancellationToken">Cancels the announcement.</param>
    /// <returns>Whether at least one block's announcement was accepted by the discovery (false too when there was nothing to take offline).</returns>
    /// <exception cref="ObjectDisposedException">The announcer is disposed.</exception>
    public async Task<bool> AnnounceOfflineAsync(CancellationToken cancellationToken = default)
    {
        ITimer? timer;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_announcedAny || _timer is null)
            {
                return false;
            }

            timer = _timer;
            _timer = null;
        }

        await timer.DisposeAsync().ConfigureAwait(false);
        return await ChangeStateAsync(ServerState.Offline, null, cancellationToken, allowOffline: true).ConfigureAwait(false);
    }

    /// <summary>Republishes the current state now (what the timer does every period), with fresh free cache tokens and, when online, round-trip times.</summary>
    /// <param name="cancellationToken">Cancels the announcement.</param>
    /// <returns>Whether at least one block's announcement was accepted; false when nothing was announced yet.</returns>
    /// <exception cref="ObjectDisposedException">The announcer is disposed.</exception>
    public async Task<bool> AnnounceNowAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_announcedAny)
            {
                return false;
            }
        }

        await _announcing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await AnnounceCoreAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _announcing.Release();
        }
    }

    /// <summary>
    /// While <see cref="ServerState.Joining"/>: announces <paramref name="span"/> instead of the span announced so far (a
    /// joining server that found another one loading the same blocks), and <see cref="ServerState.Offline"/> for the blocks it
    /// leaves.
    /// </summary>
    /// <param name="span">The new span, within the model.</param>
    /// <param name="cancellationToken">Cancels the announcement.</param>
    /// <returns>Whether at least one block's announcement of the new span was accepted.</returns>
    /// <exception cref="ArgumentException">The span is empty or goes past the model.</exception>
    /// <exception cref="InvalidOperationException">The announcer is not announcing <see cref="ServerState.Joining"/>.</exception>
    /// <exception cref="ObjectDisposedException">The announcer is disposed.</exception>
    public Task<bool> RelocateAsync(BlockRange span, CancellationToken cancellationToken = default)
    {
        CheckSpan(span);
        return ChangeStateAsync(ServerState.Joining, null, cancellationToken, span: span);
    }

    /// <summary>
    /// Announces a server that moved: <see cref="ServerState.Offline"/> for the blocks of the previous span it no longer
    /// serves, then <paramref name="server"/>'s span <see cref="ServerState.Online"/> at its address (last, so that readers,
    /// which take a server's latest records as its announcement, see the new span). The old span's server may go on
    /// serving its running sessions meanwhile. Republications then announce the new server.
    /// </summary>
    /// <param name="server">The started block server of the new span, under the announced peer id and model.</param>
    /// <param name="cancellationToken">Cancels the announcement.</param>
    /// <returns>Whether at least one block's announcement of the new span was accepted.</returns>
    /// <exception cref="ArgumentException">The server is not started, serves another model or uses another peer id.</exception>
    /// <exception cref="InvalidOperationException">The announcer already announced <see cref="ServerState.Offline"/>.</exception>
    /// <exception cref="ObjectDisposedException">The announcer is disposed.</exception>
    public Task<bool> AnnounceMovedAsync(BlockServer server, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(server);
        CheckServer(server);
        CheckSpan(server.Blocks);
        var announced = ToAnnounced(server.LocalAddress);
        return ChangeStateAsync(ServerState.Online, () => (_server, _address) = (server, announced), cancellationToken, span: server.Blocks);
    }

    /// <summary>A snapshot of the announcer's counters.</summary>
    /// <returns>The statistics.</returns>
    public ServerAnnouncerStatistics GetStatistics()
    {
        lock (_gate)
        {
            return new ServerAnnouncerStatistics(
                _state,
                Interlocked.Read(ref _announcements),
                Interlocked.Read(ref _failures),
                Interlocked.Read(ref _skipped),
                _lastAnnouncedAt,
                _announcedAny ? _lastExpiresAt : null,
                _rtts.Count);
        }
    }

    /// <summary>Stops the periodic republication and waits for an announcement in progress; announces nothing (call <see cref="AnnounceOfflineAsync"/> first for that). Idempotent.</summary>
    /// <returns>A task that completes when the announcer has stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        ITimer? timer;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            timer = _timer;
            _timer = null;
            _periodic?.Cancel();
        }

        if (timer is not null)
        {
            await timer.DisposeAsync().ConfigureAwait(false);
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        Task[] pending;
        lock (_gate)
        {
            pending = [.. _background];
        }

        await Task.WhenAll(pending).ConfigureAwait(false);
        _stop.Dispose();
    }

    /// <summary>
    /// Announces <paramref name="state"/> now (a periodic republication in progress yields). With <paramref name="span"/>,
    /// the server moves there: the blocks it leaves are announced <see cref="ServerState.Offline"/> first, then the new span,
    /// so that the new span's records are the server's latest (readers take those as its announcement).
    /// </summary>
    private async Task<bool> ChangeStateAsync(ServerState state, Action? update, CancellationToken cancellationToken, bool allowOffline = false, BlockRange? span = null)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!allowOffline && _announcedAny && _state == ServerState.Offline)
            {
                throw new InvalidOperationException($"The server announced blocks {_span} of '{ModelId}' offline; a stopped announcer does not come back (create a new one).");
            }

            if (span is not null && state == ServerState.Joining && _state != ServerState.Joining)
            {
                throw new InvalidOperationException($"Relocating is for a joining server; this one announces {_state}: announce a move of a running server with AnnounceMovedAsync.");
            }

            // The new state must go out now: a periodic republication in progress (perhaps waiting on a slow ping) yields.
            _periodic?.Cancel();
        }

        await _announcing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ServerState previous;
            BlockRange old;
            lock (_gate)
            {
                (previous, old) = (_state, _span);
                _state = state;
                update?.Invoke();
                if (span is { } moved)
                {
                    _span = moved;
                    _rtts = new Dictionary<string, TimeSpan>(); // the next block changed with the span
                }

                _announcedAny = true;
                if (_timer is null && state != ServerState.Offline)
                {
                    _timer = _time.CreateTimer(static s => ((ServerAnnouncer)s!).OnTimer(), this, _options.AnnounceInterval, _options.AnnounceInterval);
                }
            }

            if (span is not { } to)
            {
                ServerLog.StateChanged(_logger, ModelId, old.ToString(), previous, state);
                return await AnnounceCoreAsync(cancellationToken).ConfigureAwait(false);
            }

            ServerLog.SpanMoved(_logger, ModelId, old.ToString(), to.ToString(), state);
            foreach (var (start, end) in new[] { (old.Start, Math.Min(old.End, to.Start)), (Math.Max(old.Start, to.End), old.End) })
            {
                if (end > start)
                {
                    await AnnounceCoreAsync(cancellationToken, new BlockRange(start, end)).ConfigureAwait(false);
                }
            }

            return await AnnounceCoreAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _announcing.Release();
        }
    }

    private void OnTimer()
    {
        lock (_gate)
        {
            if (_disposed || _timer is null)
            {
                return;
            }

            var task = Task.Run(RepublishAsync, CancellationToken.None);
            _background.Add(task);
            _ = task.ContinueWith(
                static (t, s) =>
                {
                    var self = (ServerAnnouncer)s!;
                    lock (self._gate)
                    {
                        self._background.Remove(t);
                    }
                },
                this,
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
    }

    private async Task RepublishAsync()
    {
        if (!_announcing.Wait(0))
        {
            // The previous period's announcement (or a state change) is still going: skip rather than pile up.
            Interlocked.Increment(ref _skipped);
            ServerLog.AnnouncementSkipped(_logger, ModelId, Span.ToString());
            return;
        }

        CancellationTokenSource periodic;
        try
        {
            lock (_gate)
            {
                if (_disposed || _timer is null)
                {
                    return;
                }

                periodic = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                _periodic = periodic;
            }

            try
            {
                await AnnounceCoreAsync(periodic.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (periodic.IsCancellationRequested)
            {
                // Preempted by a state change or stopped: the next announcement carries the news.
            }
            finally
            {
                lock (_gate)
                {
                    _periodic = null;
                }

                periodic.Dispose();
            }
        }
        finally
        {
            _announcing.Release();
        }
    }

    /// <summary>Announces the current state once; the caller holds <see cref="_announcing"/>. Throws only cancellation of <paramref name="cancellationToken"/>.</summary>
    /// <param name="cancellationToken">Cancels the announcement.</param>
    /// <param name="left">Blocks the server left: announced <see cref="ServerState.Offline"/> (and only them) instead of the current state.</param>
    private async Task<bool> AnnounceCoreAsync(CancellationToken cancellationToken, BlockRange? left = null)
    {
        ServerState state;
        BlockServer? server;
        PeerAddress address;
        BlockRange span;
        lock (_gate)
        {
            (state, server, address, span) = (_state, _server, _address, _span);
        }

        if (left is { } leftBlocks)
        {
            (state, span) = (ServerState.Offline, leftBlocks);
        }

        try
        {
            if (state == ServerState.Online && span.End < BlockCount && _options.MaxNextServers > 0)
            {
                var rtts = await MeasureNextServerRttsAsync(span, cancellationToken).ConfigureAwait(false);
                lock (_gate)
                {
                    _rtts = rtts;
                }
            }

            var now = _time.GetUtcNow();
            var timeToLive = _options.EffectiveTimeToLive;

            // Record expirations have millisecond precision and the DHT keeps the later of two versions: every
            // announcement must expire at least 1 ms after the previous one, even when the clock did not move.
            DateTimeOffset expiresAt;
            lock (_gate)
            {
                var earliest = _lastExpiresAt == DateTimeOffset.MinValue ? now : _lastExpiresAt + TimeSpan.FromMilliseconds(1);
                if (now + timeToLive < earliest)
                {
                    timeToLive = earliest - now;
                }

                expiresAt = now + timeToLive;
            }

            var info = new ServerInfo
            {
                PeerId = PeerId,
                Address = address,
                State = state,
                Span = span,
                Throughput = Throughput,
                CacheTokensLeft = state == ServerState.Offline ? 0 : server?.CacheTokensLeft ?? 0,
                DType = _options.DType,
                Version = _options.Version,
                PublicName = _options.PublicName,
                ThroughputMethod = ThroughputMethod,
                Quantization = server?.Quantization,
                Adapters = server is null ? [] : [.. server.Options.Adapters.Keys.Order(StringComparer.Ordinal)],
                NextServerRtts = state == ServerState.Online ? NextServerRtts : new Dictionary<string, TimeSpan>(),
            };

            lock (_gate)
            {
                // Before the call: records of a failed announcement may still have reached some nodes.
                _lastExpiresAt = expiresAt;
            }

            var accepted = await _discovery.AnnounceAsync(ModelId, BlockCount, info, timeToLive, cancellationToken).ConfigureAwait(false);

            if (accepted <= 0)
            {
                Interlocked.Increment(ref _failures);
                ServerLog.AnnouncementRejected(_logger, ModelId, span.ToString(), state);
                return false;
            }

            if (accepted < span.Count)
            {
                ServerLog.AnnouncementPartial(_logger, ModelId, span.ToString(), state, accepted, span.Count);
            }

            Interlocked.Increment(ref _announcements);
            lock (_gate)
            {
                _lastAnnouncedAt = now;
            }

            ServerLog.Announced(_logger, ModelId, span.ToString(), state, info.CacheTokensLeft, info.NextServerRtts.Count, expiresAt);
            return true;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // A failed announcement (unreachable DHT, bug in a discovery) must never take the server down: retried next period.
        catch (Exception e)
#pragma warning restore CA1031
        {
            Interlocked.Increment(ref _failures);
            ServerLog.AnnouncementFailed(_logger, e, ModelId, span.ToString(), state);
            return false;
        }
    }

    /// <summary>Pings up to <see cref="ServerAnnouncerOptions.MaxNextServers"/> online servers of block <c>Span.End</c> over the wire protocol.</summary>
    private async Task<IReadOnlyDictionary<string, TimeSpan>> MeasureNextServerRttsAsync(BlockRange span, CancellationToken cancellationToken)
    {
        var next = new BlockRange(span.End, span.End + 1);
        var found = await _discovery.GetServersAsync(ModelId, next, cancellationToken).ConfigureAwait(false);
        var previous = NextServerRtts;
        var candidates = found
            .SelectMany(b => b.Servers)
            .Where(s => s.State == ServerState.Online && !s.Address.IsEmpty && !string.Equals(s.PeerId, PeerId, StringComparison.Ordinal))
            .DistinctBy(s => s.PeerId, StringComparer.Ordinal)
            .OrderBy(s => previous.ContainsKey(s.PeerId) ? 0 : 1) // keep measuring the same servers while they last
            .ThenBy(s => s.PeerId, StringComparer.Ordinal)
            .Take(_options.MaxNextServers)
            .ToArray();

        var rtts = await Task.WhenAll(candidates.Select(s => PingAsync(s, cancellationToken))).ConfigureAwait(false);
        var result = new Dictionary<string, TimeSpan>(StringComparer.Ordinal);
        for (var i = 0; i < candidates.Length; i++)
        {
            if (rtts[i] is { } rtt)
            {
                result[candidates[i].PeerId] = rtt;
            }
        }

        return result;
    }

    /// <summary>Probes <paramref name="server"/> (<see cref="PeerProbe"/>); null (logged) when it fails or times out.</summary>
    private async Task<TimeSpan?> PingAsync(ServerInfo server, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.PingTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            return await PeerProbe.ProbeAsync(_transport, server, new ConnectionPreamble(PeerId, ModelId), linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException)
        {
            ServerLog.PingFailed(_logger, server.PeerId, server.Address, string.Create(CultureInfo.InvariantCulture, $"no answer within {_options.PingTimeout.TotalSeconds:0.###} s"));
            return null;
        }
        catch (Exception e) when (e is TransportException or ProtocolException or IOException or ObjectDisposedException or ArgumentException or FormatException or InvalidOperationException or PeerProbeException)
        {
            ServerLog.PingFailed(_logger, server.PeerId, server.Address, e.Message);
            return null;
        }
    }

    private void CheckServer(BlockServer server)
    {
        if (!string.Equals(server.Options.ModelId, ModelId, StringComparison.Ordinal))
        {
            throw new ArgumentException($"The server serves '{server.Options.ModelId}', not the announced model '{ModelId}'.", nameof(server));
        }

        if (!string.Equals(server.Options.PeerId, PeerId, StringComparison.Ordinal))
        {
            throw new ArgumentException($"The server's wire peer id '{server.Options.PeerId}' is not the announced peer id '{PeerId}': clients could not match the announcement with the handshake.", nameof(server));
        }

        if (server.LocalAddress.IsEmpty)
        {
            throw new ArgumentException("The server is not started: it has no listening address to announce.", nameof(server));
        }
    }

    private void CheckSpan(BlockRange span)
    {
        if (span.Count <= 0 || span.Start < 0 || span.End > BlockCount)
        {
            throw new ArgumentException($"The span {span} is empty or goes past the model's {BlockCount} blocks.", nameof(span));
        }
    }

    private PeerAddress ToAnnounced(PeerAddress address)
    {
        if (address.IsEmpty)
        {
            throw new ArgumentException("The address to announce is empty.", nameof(address));
        }

        if (_options.AnnounceHost is not { } host)
        {
            return address;
        }

        try
        {
            return PeerAddress.FromHostPort(address.Scheme, host, address.Port, address.PeerId);
        }
        catch (FormatException e)
        {
            throw new ArgumentException($"AnnounceHost '{host}' cannot replace the host of {address}: {e.Message}", nameof(address), e);
        }
    }
}
