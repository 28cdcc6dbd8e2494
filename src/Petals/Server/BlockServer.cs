using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Petals.Execution;
using Petals.Models;
using Petals.Protocol;
using Petals.Tensors;
using Petals.Transport;

namespace Petals.Server;

/// <summary>
/// Serves one span of decoder blocks over the wire protocol: info, ping, stateless forward passes and inference
/// sessions with their attention caches, charged against a token budget (docs/architecture.md, "Block server").
/// </summary>
/// <remarks>
/// Start it with <see cref="StartAsync"/> on a listener; stop it with <see cref="StopAsync"/> or <see cref="DisposeAsync"/>.
/// Compute runs on one dedicated thread, inference steps before forward batches. A failure on one connection never
/// affects another. The server does not own the executor: dispose the executor after the server. Thread-safe.
/// </remarks>
public sealed class BlockServer : IAsyncDisposable
{
    private string? _drainReason;
    private readonly ILogger _logger;
    private readonly ConnectionPreamble _preamble;
    private readonly ConcurrentDictionary<ServerConnection, byte> _connections = new();
    private readonly ConcurrentDictionary<InferenceSession, byte> _sessions = new();
    private readonly ConcurrentDictionary<Task, byte> _connectionTasks = new();
    private readonly CancellationTokenSource _acceptCts = new();
    private readonly CancellationTokenSource _runCts = new();
    private readonly Lock _lifecycle = new();
    private ITransportListener? _listener;
    private Task _acceptLoop = Task.CompletedTask;
    private ITimer? _sweeper;
    private Task? _stopping;
    private long _connectionsAccepted;
    private long _queuedInputBytes;
    private long _sessionsOpened;
    private long _steps;
    private long _forwards;
    private long _backwards;
    private long _tokens;
    private long _closedBytesSent;
    private long _closedBytesReceived;
    private long _nonFiniteRefused;
    private readonly Lock _admission = new();
    private readonly Dictionary<string, int> _perAddress = new(StringComparer.Ordinal);
    private readonly RateLimitedCounter _refusals;
    private int _openConnections;
    private long _refusedTotal;
    private long _refusedPerAddress;
    private long _handshakeTimeouts;
    private long _idleClosed;
    private long _slowClosed;
    private int _sweeping;

    /// <summary>Creates a server for <paramref name="executor"/>'s span.</summary>
    /// <param name="executor">The executor of the span; not disposed by the server.</param>
    /// <param name="options">The settings; <see cref="BlockServerOptions.Blocks"/> must equal the executor's span.</param>
    /// <param name="logger">Where to log; none by default.</param>
    /// <exception cref="ArgumentException">When an option is invalid or the span differs from the executor's.</exception>
    public BlockServer(IBlockExecutor executor, BlockServerOptions options, ILogger<BlockServer>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(executor);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.Blocks != executor.Blocks)
        {
            throw new ArgumentException($"The options name blocks {options.Blocks} but the executor runs blocks {executor.Blocks}.", nameof(options));
        }

        foreach (var (name, weights) in options.Adapters)
        {
            var config = executor.Config;
            if (weights.Config.HiddenSize != config.HiddenSize || weights.Config.IntermediateSize != config.IntermediateSize
                || weights.Config.NumHeads != config.NumHeads || weights.Config.NumKeyValueHeads != config.NumKeyValueHeads || weights.Config.HeadDim != config.HeadDim)
            {
                throw new ArgumentException($"Adapter '{name}' is shaped for another model than the executor's.", nameof(options));
            }
        }

        Executor = executor;
        Options = options;
        Quantization = QuantizationOf(executor);
        _logger = logger ?? (ILogger)NullLogger.Instance;
        Budget = new CacheBudget(options.CacheTokens, options.TimeProvider, options.CacheTokensPerPeer);
        Scheduler = new ComputeScheduler();
        _preamble = new ConnectionPreamble(options.PeerId, options.ModelId, options.Limits.MaxFrameSize);
        ReassemblyBudget = new ReassemblyBudget(options.MaxReassemblyBytes);
        _refusals = new RateLimitedCounter(options.TimeProvider, RefusalLogInterval);
    }

    /// <summary>At most one log line about refused connections per this interval; the others are counted in it.</summary>
    internal static readonly TimeSpan RefusalLogInterval = TimeSpan.FromSeconds(10);

    /// <summary>The bytes chunked messages being reassembled hold over all connections (<see cref="BlockServerOptions.MaxReassemblyBytes"/>).</summary>
    internal ReassemblyBudget ReassemblyBudget { get; }

    /// <summary>The settings.</summary>
    public BlockServerOptions Options { get; }

    /// <summary>The blocks served.</summary>
    public BlockRange Blocks => Options.Blocks;

    /// <summary>
    /// How the executor holds the span's weights, as announced and sent in the info: its
    /// <see cref="ExecutorWeightsInfo.Quantization"/>, or <c>"none"</c> when it reports none.
    /// </summary>
    public string Quantization { get; }

    /// <summary>The quantization <paramref name="executor"/> reports (<c>"none"</c> when it reports none).</summary>
    /// <exception cref="ArgumentException">When the reported quantization could not be announced (empty, too long, other characters than a-z, 0-9, '_' and '+').</exception>
    internal static string QuantizationOf(IBlockExecutor executor)
    {
        var quantization = (executor.GetService(typeof(ExecutorWeightsInfo)) as ExecutorWeightsInfo)?.Quantization ?? "none";
        return Discovery.AnnouncementLimits.IsValidQuantization(quantization, out var fault)
            ? quantization
            : throw new ArgumentException($"The executor reports a weight quantization that cannot be announced: {fault}", nameof(executor));
    }

    /// <summary>Whether a forward call or session may name <paramref name="blocks"/>: a non-empty range within <see cref="Blocks"/>.</summary>
    internal bool Serves(BlockRange blocks) => blocks.Count > 0 && blocks.Start >= Blocks.Start && blocks.End <= Blocks.End;

    /// <summary>
    /// The cache tokens a session of <paramref name="batch"/> rows and <paramref name="maxLength"/> positions over
    /// <paramref name="blocks"/> (within <paramref name="span"/>) reserves: <c>ceil(batch × maxLength × blocks.Count / span.Count)</c>,
    /// since the budget (<see cref="BlockServerOptions.CacheTokens"/>) counts tokens cached for the whole span and a
    /// sub-range caches only its blocks; the whole span reserves exactly <c>batch × maxLength</c>.
    /// </summary>
    internal static long CacheTokensForSpan(int batch, int maxLength, BlockRange blocks, BlockRange span)
    {
        var whole = (long)batch * maxLength;
        return blocks == span ? whole : ((whole * blocks.Count) + span.Count - 1) / span.Count;
    }

    /// <summary>The error for a sub-range request that the executor refused because it runs only its whole span.</summary>
    internal ProtocolException SubRangeUnsupported(BlockRange blocks, Exception refusal) => new(BlockServerErrors.Unsupported,
        $"blocks {blocks} requested; this server's executor runs only its whole span {Blocks} ({refusal.Message})");

    /// <summary>As <see cref="CacheTokensForSpan"/> for this server's span.</summary>
    internal long CacheTokensFor(int batch, int maxLength, BlockRange blocks) => CacheTokensForSpan(batch, maxLength, blocks, Blocks);

    /// <summary>The model's configuration.</summary>
    public ModelConfig Config => Executor.Config;

    /// <summary>The address the server listens on (empty before <see cref="StartAsync"/>).</summary>
    public PeerAddress LocalAddress { get; private set; }

    /// <summary>Attention cache tokens free now.</summary>
    public long CacheTokensLeft => Budget.Free;

    /// <summary>Inference sessions open now.</summary>
    public int ActiveSessions => _sessions.Count;

    internal IBlockExecutor Executor { get; }

    internal CacheBudget Budget { get; }

    internal ComputeScheduler Scheduler { get; }

    internal TimeProvider Time => Options.TimeProvider;

    internal bool IsStopping => _acceptCts.IsCancellationRequested;

    /// <summary>Why new sessions and forward calls are refused (<see cref="StopAcceptingSessions"/> or stopping), or null while they are accepted.</summary>
    internal string? RefusalReason => IsStopping ? "the server is shutting down" : Volatile.Read(ref _drainReason);

    /// <summary>
    /// Refuses new sessions and forward calls from now on, with the retryable <c>shutting_down</c> error and
    /// <paramref name="reason"/>, while the sessions already open go on (a server that moves to other blocks drains its old
    /// span this way before it stops it). Idempotent; the first reason stays.
    /// </summary>
    /// <param name="reason">Why, sent to clients, e.g. <c>this server moved to blocks 2:4</c>.</param>
    public void StopAcceptingSessions(string reason)
    {
        ArgumentException.ThrowIfNullOrEmpty(reason);
        Interlocked.CompareExchange(ref _drainReason, reason, null);
    }

    /// <summary>Starts accepting connections on <paramref name="listener"/>, which the server then owns (and disposes when it stops).</summary>
    /// <param name="listener">A bound listener (TCP, QUIC, memory).</param>
    /// <param name="cancellationToken">Unused beyond an early check; stop the server with <see cref="StopAsync"/>.</param>
    /// <returns>A task that completes once the server accepts connections.</returns>
    /// <exception cref="InvalidOperationException">When the server was already started or stopped.</exception>
    public Task StartAsync(ITransportListener listener, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(listener);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_lifecycle)
        {
            if (_listener is not null || _stopping is not null)
            {
                throw new InvalidOperationException("The block server was already started.");
            }

            _listener = listener;
            LocalAddress = listener.LocalAddress;
        }

        var shortest = Math.Min(Options.SessionIdleTimeout.Ticks, Math.Min(Options.ConnectionIdleTimeout.Ticks, Options.MinReceiveRateWindow.Ticks));
        var period = TimeSpan.FromTicks(Math.Clamp(shortest / 4, TimeSpan.TicksPerMillisecond * 10, TimeSpan.TicksPerSecond * 5));
        _sweeper = Time.CreateTimer(static s => ((BlockServer)s!).Sweep(), this, period, period);
        _acceptLoop = Task.Run(() => AcceptLoopAsync(listener, _acceptCts.Token), CancellationToken.None);
        ServerLog.Listening(_logger, Options.ModelId, Blocks.ToString(), LocalAddress);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Stops accepting, ends open sessions with a <c>shutting_down</c> error, lets forward passes in progress finish,
    /// closes every connection and frees every cache. Safe to call more than once.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting (the shutdown goes on in the background).</param>
    /// <returns>A task that completes when everything is closed and freed.</returns>
    public Task StopAsync(CancellationToken cancellationToken = default)
    {
        Task stopping;
        lock (_lifecycle)
        {
            stopping = _stopping ??= StopCoreAsync();
        }

        return stopping.WaitAsync(cancellationToken);
    }

    /// <summary>Stops the server (<see cref="StopAsync"/>) and releases its compute thread.</summary>
    /// <returns>A task that completes when the server is stopped.</returns>
    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    /// <summary>A snapshot of the server's counters.</summary>
    /// <returns>The statistics.</returns>
    public BlockServerStatistics GetStatistics()
    {
        long sent = Interlocked.Read(ref _closedBytesSent), received = Interlocked.Read(ref _closedBytesReceived);
        foreach (var connection in _connections.Keys)
        {
            sent += connection.Connection.BytesSent;
            received += connection.Connection.BytesReceived;
        }

        return new BlockServerStatistics(
            Interlocked.Read(ref _connectionsAccepted),
            _connections.Count,
            Interlocked.Read(ref _sessionsOpened),
            _sessions.Count,
            Interlocked.Read(ref _steps),
            Interlocked.Read(ref _forwards),
            Interlocked.Read(ref _tokens),
            sent,
            received,
            Scheduler.ComputeTime,
            Budget.Capacity,
            Budget.Free,
            Budget.PeakUsed)
        {
            CacheTokensPerPeer = Budget.PeerLimit,
            CacheRefusedOverShare = Budget.RefusedOverShare,
            CacheRefusedTimedOut = Budget.RefusedTimedOut,
            CacheRefusedTooLarge = Budget.RefusedTooLarge,
            NonFiniteInputsRefused = Interlocked.Read(ref _nonFiniteRefused),
            OpenConnections = Volatile.Read(ref _openConnections),
            ConnectionsRefused = Interlocked.Read(ref _refusedTotal),
            ConnectionsRefusedPerAddress = Interlocked.Read(ref _refusedPerAddress),
            HandshakeTimeouts = Interlocked.Read(ref _handshakeTimeouts),
            IdleConnectionsClosed = Interlocked.Read(ref _idleClosed),
            SlowConnectionsClosed = Interlocked.Read(ref _slowClosed),
            BackwardCalls = Interlocked.Read(ref _backwards),
            ReassemblyBytes = ReassemblyBudget.Used,
            PeakReassemblyBytes = ReassemblyBudget.Peak,
            ReassemblyRefusals = ReassemblyBudget.Refusals,
        };
    }

    /// <summary>Counts a request refused for a NaN or infinity (<c>non_finite_input</c>).</summary>
    internal void OnNonFiniteRefused() => Interlocked.Increment(ref _nonFiniteRefused);

    /// <summary>Connections with part of a message received and the rest not yet (for tests).</summary>
    internal int MessagesInProgress => _connections.Keys.Count(static c => c.Connection.MessageInProgress);

    /// <summary>Bytes of received hidden states held for steps and forwards not yet answered (see <see cref="BlockServerOptions.MaxQueuedInputBytes"/>).</summary>
    public long QueuedInputBytes => Interlocked.Read(ref _queuedInputBytes);

    /// <summary>Charges <paramref name="bytes"/> of received inputs to the queued-input budget; false when it is full.</summary>
    internal bool TryReserveInput(long bytes)
    {
        var total = Interlocked.Add(ref _queuedInputBytes, bytes);
        if (total > Options.MaxQueuedInputBytes && total != bytes)
        {
            Interlocked.Add(ref _queuedInputBytes, -bytes);
            return false;
        }

        return true;
    }

    /// <summary>Returns what <see cref="TryReserveInput"/> charged.</summary>
    internal void ReleaseInput(long bytes) => Interlocked.Add(ref _queuedInputBytes, -bytes);

    /// <summary>The error for a request that does not fit the queued-input budget.</summary>
    internal ProtocolException InputBudgetFull(long bytes) => new(
        ProtocolErrorCode.Busy,
        string.Create(CultureInfo.InvariantCulture, $"the server already holds {QueuedInputBytes} bytes of inputs waiting for computation (limit {Options.MaxQueuedInputBytes}); this request needs {bytes} more: retry when results arrive"));

    /// <summary>
    /// The server's info for a connection that negotiated protocol minor version <paramref name="versionMinor"/> (1.1 adds
    /// the stated error bound; 1.2 the quantization, and the int8 codec is advertised from 1.2 on, since a 1.0/1.1 peer
    /// refuses an unknown codec bit).
    /// </summary>
    internal InfoResponse CreateInfo(ushort versionMinor = ConnectionPreamble.CurrentVersionMinor) => new(
        ConnectionPreamble.CurrentVersionMajor,
        ConnectionPreamble.CurrentVersionMinor,
        Options.ModelId,
        Blocks,
        Config.HiddenSize,
        TensorDType.F32,
        versionMinor >= 2 ? Options.Codecs : Options.Codecs & WireCodecs.Protocol10,
        (ulong)Budget.Free,
        Options.Limits.MaxFrameSize,
        Options.Limits.MaxMessageSize,
        Options.MaxBatchTokens,
        Options.MaxSessionLength)
    {
        StatedError = versionMinor >= 1 ? (float)Execution.NumericErrorBound.Of(Executor).RelativeError : null,
        Quantization = versionMinor >= 2 ? Quantization : null,
        Adapters = versionMinor >= ConnectionPreamble.FineTuningVersionMinor ? [.. Options.Adapters.Keys.Order(StringComparer.Ordinal)] : null,
    };

    internal bool Accepts(WireCodec codec) => (byte)codec < 8 && ((int)Options.Codecs & (1 << (int)codec)) != 0;

    internal void OnSessionOpened(InferenceSession session)
    {
        _sessions.TryAdd(session, 0);
        Interlocked.Increment(ref _sessionsOpened);
        ServerLog.SessionOpened(_logger, session.Id, session.StreamId, session.Blocks.ToString(), session.MaxLength);
    }

    internal void OnSessionEnded(InferenceSession session, long steps, string reason)
    {
        _sessions.TryRemove(session, out _);
        ServerLog.SessionEnded(_logger, session.Id, steps, reason);
    }

    internal void OnComputed(int tokens, bool inference)
    {
        Interlocked.Add(ref _tokens, tokens);
        Interlocked.Increment(ref inference ? ref _steps : ref _forwards);
    }

    /// <summary>Counts a backward request computed over <paramref name="tokens"/> batch rows × positions.</summary>
    internal void OnBackwardComputed(int tokens)
    {
        Interlocked.Add(ref _tokens, tokens);
        Interlocked.Increment(ref _backwards);
    }

    /// <summary>
    /// The server-held adapter <paramref name="name"/> for <paramref name="blocks"/> (a view of its weights), or a
    /// <c>unknown_adapter</c> error naming the adapters this server has.
    /// </summary>
    internal Execution.LoraWeights ResolveAdapter(string name, BlockRange blocks)
    {
        if (!Options.Adapters.TryGetValue(name, out var weights))
        {
            var have = Options.Adapters.Count == 0 ? "none" : string.Join(", ", Options.Adapters.Keys.Order(StringComparer.Ordinal).Select(k => $"'{k}'"));
            throw new ProtocolException(BlockServerErrors.UnknownAdapter, $"adapter '{name}' is not held by this server (it has: {have})");
        }

        if (blocks.Start < weights.Blocks.Start || blocks.End > weights.Blocks.End)
        {
            throw new ProtocolException(BlockServerErrors.UnknownAdapter, $"adapter '{name}' covers blocks {weights.Blocks}, not the requested {blocks}");
        }

        return weights.Slice(blocks);
    }

    /// <summary>The periodic check of every deadline: idle sessions, idle connections, slow messages. Never runs twice at once.</summary>
    private void Sweep()
    {
        if (Interlocked.Exchange(ref _sweeping, 1) != 0)
        {
            return;
        }

        try
        {
            SweepIdleSessions();
            SweepConnections();
        }
        finally
        {
            Volatile.Write(ref _sweeping, 0);
        }
    }

    private void SweepConnections()
    {
        var now = Time.GetTimestamp();
        foreach (var connection in _connections.Keys)
        {
            var verdict = connection.Check(now);
            if (verdict == ConnectionVerdict.None)
            {
                continue;
            }

            Interlocked.Increment(ref verdict == ConnectionVerdict.Idle ? ref _idleClosed : ref _slowClosed);
            ServerLog.ConnectionDropped(_logger, connection.Connection.RemoteAddress, connection.DropReason ?? verdict.ToString());
        }
    }

    /// <summary>Counts a connection against the limits; false when it is over one (<paramref name="reason"/> says which).</summary>
    private bool TryAdmit(string address, out string reason)
    {
        lock (_admission)
        {
            if (_openConnections >= Options.MaxConnections)
            {
                reason = string.Create(CultureInfo.InvariantCulture, $"the server holds its limit of {Options.MaxConnections} connections; retry later or use another server");
                Interlocked.Increment(ref _refusedTotal);
                return false;
            }

            _perAddress.TryGetValue(address, out var count);
            if (count >= Options.MaxConnectionsPerAddress)
            {
                reason = string.Create(CultureInfo.InvariantCulture, $"the server holds its limit of {Options.MaxConnectionsPerAddress} connections from {address}; close one or retry later");
                Interlocked.Increment(ref _refusedTotal);
                Interlocked.Increment(ref _refusedPerAddress);
                return false;
            }

            _perAddress[address] = count + 1;
            _openConnections++;
            reason = string.Empty;
            return true;
        }
    }

    private void Release(string address)
    {
        lock (_admission)
        {
            _openConnections--;
            if (_perAddress.TryGetValue(address, out var count) && count > 1)
            {
                _perAddress[address] = count - 1;
            }
            else
            {
                _perAddress.Remove(address);
            }
        }
    }

    private async Task RefuseAsync(ITransportStream stream, string reason)
    {
        var remote = stream.RemoteAddress;
        if (_refusals.Add(out var suppressed))
        {
            ServerLog.ConnectionsRefused(_logger, suppressed + 1, RefusalLogInterval.TotalSeconds, remote, reason);
        }

        await ProtocolConnection.RefuseAsync(stream, _preamble, new ProtocolException(ProtocolErrorCode.ConnectionLimit, reason), RefuseTimeout).ConfigureAwait(false);
    }

    /// <summary>How long telling a refused connection why may take before it is aborted.</summary>
    private static readonly TimeSpan RefuseTimeout = TimeSpan.FromSeconds(2);

    private void SweepIdleSessions()
    {
        var timeout = Options.SessionIdleTimeout;
        foreach (var session in _sessions.Keys)
        {
            if (session.IsIdle(timeout))
            {
                session.Cancel(
                    new ProtocolException(BlockServerErrors.SessionTimeout, $"the session received nothing for {timeout.TotalSeconds:0.###} s; its cache was freed"),
                    "idle timeout");
            }
        }
    }

    private async Task AcceptLoopAsync(ITransportListener listener, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            ITransportStream stream;
            try
            {
                stream = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (ObjectDisposedException)
            {
                break;
            }
            catch (TransportException ex)
            {
                ServerLog.AcceptFailed(_logger, ex);
                if (cancellationToken.IsCancellationRequested)
                {
                    break;
                }

                // A failed accept (a client that reset during its handshake) must not stop the server; pace retries.
                await Task.Delay(TimeSpan.FromMilliseconds(10), Time, CancellationToken.None).ConfigureAwait(false);
                continue;
            }

            var address = AddressKey(stream.RemoteAddress);
            var task = TryAdmit(address, out var refusal) ? ServeAsync(stream, address) : RefuseAsync(stream, refusal);
            _connectionTasks.TryAdd(task, 0);
            _ = task.ContinueWith(static (t, s) => ((ConcurrentDictionary<Task, byte>)s!).TryRemove(t, out _), _connectionTasks, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>
    /// The key of the per-address limit: the remote host of a host:port address (the port differs per connection), the
    /// whole location of any other (an in-memory transport's peer name).
    /// </summary>
    internal static string AddressKey(PeerAddress remote)
    {
        if (remote.IsEmpty)
        {
            return string.Empty;
        }

        try
        {
            return remote.Host;
        }
        catch (FormatException)
        {
            return remote.Scheme + "://" + remote.Location;
        }
    }

    private async Task ServeAsync(ITransportStream stream, string address)
    {
        try
        {
            await ServeAdmittedAsync(stream).ConfigureAwait(false);
        }
        finally
        {
            Release(address);
        }
    }

    private async Task ServeAdmittedAsync(ITransportStream stream)
    {
        await Task.Yield();
        var remote = stream.RemoteAddress;
        ProtocolConnection connection;
        using (var deadline = new CancellationTokenSource(Options.HandshakeTimeout, Time))
        using (var handshake = CancellationTokenSource.CreateLinkedTokenSource(_runCts.Token, deadline.Token))
        {
            try
            {
                connection = await ProtocolConnection.AcceptAsync(stream, _preamble, Options.Limits, ReassemblyBudget, handshake.Token).ConfigureAwait(false);
            }
            catch (ProtocolException ex)
            {
                ServerLog.HandshakeFailed(_logger, remote, ex.Message);
                return;
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested)
            {
                Interlocked.Increment(ref _handshakeTimeouts);
                ServerLog.HandshakeFailed(_logger, remote, string.Create(CultureInfo.InvariantCulture, $"no valid preamble within the handshake timeout of {Options.HandshakeTimeout.TotalSeconds:0.###} s"));
                await stream.DisposeAsync().ConfigureAwait(false);
                return;
            }
#pragma warning disable CA1031 // A client that broke or stalled during the handshake: drop it, keep serving.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                ServerLog.HandshakeFailed(_logger, remote, ex.Message);
                await stream.DisposeAsync().ConfigureAwait(false);
                return;
            }
        }

        Interlocked.Increment(ref _connectionsAccepted);
        var handler = new ServerConnection(this, connection);
        _connections.TryAdd(handler, 0);
        var reason = "closed by the client";
        try
        {
            await connection.RunAsync(handler, _runCts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_runCts.IsCancellationRequested)
        {
            reason = "server stopped";
        }
        catch (OperationCanceledException) when (handler.DropReason is not null)
        {
            reason = handler.DropReason;
        }
        catch (Exception ex) when (ex is ProtocolException or TransportException or IOException)
        {
            reason = ex.Message;
        }
#pragma warning disable CA1031 // One connection's failure must not affect the others.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            reason = ex.Message;
            ServerLog.ConnectionFailed(_logger, remote, ex);
        }
        finally
        {
            reason = handler.DropReason ?? reason;
            await handler.CloseAsync(null, "connection ended: " + reason).ConfigureAwait(false);
            await connection.DisposeAsync().ConfigureAwait(false);
            Interlocked.Add(ref _closedBytesSent, connection.BytesSent);
            Interlocked.Add(ref _closedBytesReceived, connection.BytesReceived);
            _connections.TryRemove(handler, out _);
            ServerLog.ConnectionEnded(_logger, remote, reason);
        }
    }

    private async Task StopCoreAsync()
    {
        await Task.Yield();
        await _acceptCts.CancelAsync().ConfigureAwait(false);
        if (_listener is { } listener)
        {
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        await _acceptLoop.ConfigureAwait(false);
        if (_sweeper is { } sweeper)
        {
            await sweeper.DisposeAsync().ConfigureAwait(false);
        }

        // Tell open sessions, let calls in progress finish, then close the connections.
        var error = new ProtocolException(BlockServerErrors.ShuttingDown, "the server is shutting down");
        await Task.WhenAll(_connections.Keys.Select(c => c.CloseAsync(error, "server stopped"))).ConfigureAwait(false);
        await _runCts.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_connectionTasks.Keys).ConfigureAwait(false);
        Scheduler.Dispose();
        _acceptCts.Dispose();
        _runCts.Dispose();
        ServerLog.Stopped(_logger);
    }
}
