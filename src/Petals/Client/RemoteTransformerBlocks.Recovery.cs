using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Petals.Discovery;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <content>
/// Fault tolerance of chains connected through a <see cref="SwarmSequenceManager"/>: a pool of connections by peer id,
/// sessions that keep each span's inputs and replace a failed span by replaying them (Algorithm 1 of the Petals paper),
/// and stateless calls routed by throughput and retried.
/// </content>
public sealed partial class RemoteTransformerBlocks
{
    private Recovery? _recovery;
    private long _recoveries;

    /// <summary>
    /// Raised after each recovery of a session of this chain, once the replacement servers have rebuilt their caches and
    /// answered the failed step (on the thread running that step, before the step returns). Only chains connected through
    /// a <see cref="SwarmSequenceManager"/> recover.
    /// </summary>
    public event EventHandler<SpanRecovery>? SpanRecovered;

    /// <summary>How many times sessions of this chain replaced a failed server so far.</summary>
    public long Recoveries => Interlocked.Read(ref _recoveries);

    /// <summary>The recovery context of a chain connected through a sequence manager (null otherwise); for tests.</summary>
    internal Recovery? RecoveryContext => _recovery;

    private void EnableRecovery(ITransport transport, SwarmSequenceManager sequence) =>
        _recovery = new Recovery(this, transport, sequence, _spans);

    private void OnRecovered(SpanRecovery recovery)
    {
        Interlocked.Increment(ref _recoveries);
        SpanRecovered?.Invoke(this, recovery);
    }

    /// <summary>Whether <paramref name="error"/> means the server (or the way to it) failed, rather than the caller or this process.</summary>
    private static bool IsServerFailure(Exception error, CancellationToken cancellationToken) =>
        !cancellationToken.IsCancellationRequested
        && error is TransportException or ProtocolException or TimeoutException or RemoteChainException or IOException or ObjectDisposedException;

    private async ValueTask ForwardRoutedAsync(Recovery recovery, Memory<float> hidden, int batchSize, int tokenCount, CancellationToken cancellationToken)
    {
        var shape = new TensorShape(batchSize, tokenCount, Config.HiddenSize);
        var attempts = new RecoveryAttempts();
        var links = await recovery.RouteWithRetriesAsync(new BlockRange(0, Config.NumLayers), batchSize, 0, forward: true, attempts, cancellationToken).ConfigureAwait(false);

        // The input of the segment being run, put back when its server fails (a failed call may have written part of it).
        var input = ArrayPool<float>.Shared.Rent(hidden.Length);
        try
        {
            for (var i = 0; i < links.Count;)
            {
                var link = links[i];
                hidden.Span.CopyTo(input);
                try
                {
                    var call = link.Connection.Register(new RemoteSpanConnection.PendingCall(), link.Connection.Connection.NewStreamId(), hidden);
                    await link.Connection.SendAsync(call, new ForwardRequest(link.Blocks, _options.Codec, WireTensor.FromValues(shape, hidden, _options.Codec)), cancellationToken).ConfigureAwait(false);
                    await link.Connection.WaitAsync(call, cancellationToken).ConfigureAwait(false);
                    recovery.Sequence.RecordSuccess(link.PeerId);
                    i++;
                }
                catch (Exception e) when (IsServerFailure(e, cancellationToken))
                {
                    recovery.Failed(link, e, attempts);
                    input.AsSpan(0, hidden.Length).CopyTo(hidden.Span);
                    var replacements = await recovery.RouteWithRetriesAsync(link.Blocks, batchSize, 0, forward: true, attempts, cancellationToken).ConfigureAwait(false);
                    links = [.. links.Take(i), .. replacements, .. links.Skip(i + 1)];
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(input);
        }
    }

    /// <summary>The server failures of one step (or stateless call): a line each for the final error, and the peers that failed.</summary>
    internal sealed class RecoveryAttempts
    {
        private readonly List<string> _lines = [];
        private readonly HashSet<string> _peers = new(StringComparer.Ordinal);

        public int Count => _lines.Count;

        public IReadOnlyList<string> Lines => _lines;

        public IReadOnlySet<string> Peers => _peers;

        public void Add(string peerId, string line)
        {
            _peers.Add(peerId);
            _lines.Add(line);
        }
    }

    /// <summary>A server of a chain and the blocks the chain runs there.</summary>
    internal readonly record struct ChainLink(RemoteSpanConnection Connection, BlockRange Blocks)
    {
        public string PeerId => Connection.Connection.Remote.PeerId;

        public RemoteSpanInfo Describe() => new(Connection.Connection.RemoteAddress, PeerId, Connection.Info, Blocks);
    }

    /// <summary>
    /// What a chain connected through a sequence manager needs to recover: the manager (routes, bans), the transport,
    /// a pool of connections by peer id shared by the chain's sessions and calls, and the chain new sessions start on.
    /// </summary>
    internal sealed class Recovery : IAsyncDisposable
    {
        private readonly RemoteTransformerBlocks _owner;
        private readonly ITransport _transport;
        private readonly Lock _lock = new();
        private readonly Dictionary<string, RemoteSpanConnection> _pool = new(StringComparer.Ordinal);
        private readonly List<RemoteSpanConnection> _all = [];
        private ChainLink[] _chain;
        private long _retiredSent;
        private long _retiredReceived;
        private bool _disposed;

        public Recovery(RemoteTransformerBlocks owner, ITransport transport, SwarmSequenceManager sequence, RemoteSpanConnection[] spans)
        {
            _owner = owner;
            _transport = transport;
            Sequence = sequence;
            _chain = [.. spans.Select(s => new ChainLink(s, s.Blocks))];
            foreach (var span in spans)
            {
                _all.Add(span);
                _pool.TryAdd(span.Connection.Remote.PeerId, span);
            }
        }

        public SwarmSequenceManager Sequence { get; }

        /// <summary>Whether <paramref name="connection"/> is the pooled connection of its server.</summary>
        internal bool Pools(RemoteSpanConnection connection)
        {
            lock (_lock)
            {
                return _pool.TryGetValue(connection.Connection.Remote.PeerId, out var pooled) && ReferenceEquals(pooled, connection);
            }
        }

        public RemoteSequenceOptions Options => _owner._options;

        public ChainLink[] Chain => Volatile.Read(ref _chain);

        public long BytesSent
        {
            get
            {
                lock (_lock)
                {
                    return _retiredSent + _all.Sum(c => c.Connection.BytesSent);
                }
            }
        }

        public long BytesReceived
        {
            get
            {
                lock (_lock)
                {
                    return _retiredReceived + _all.Sum(c => c.Connection.BytesReceived);
                }
            }
        }

        public IReadOnlyList<RemoteSpanInfo> DescribeChain() => [.. Chain.Select(l => l.Describe())];

        /// <summary>Makes <paramref name="after"/> the chain new sessions start on if it was <paramref name="before"/> (a session's chain before its recovery).</summary>
        public void FollowChain(ChainLink[] before, ChainLink[] after)
        {
            lock (_lock)
            {
                if (_chain.AsSpan().SequenceEqual(before))
                {
                    Volatile.Write(ref _chain, after);
                }
            }
        }

        /// <summary>
        /// The chain for a new session of <paramref name="batchSize"/> × <paramref name="maxLength"/>: routed with that
        /// cache need (a server whose announced free cache cannot hold it is avoided), connected through the pool, and
        /// made the chain new sessions start on. The current chain when the router picks it again, or when the swarm view
        /// offers no route (its servers may still answer).
        /// </summary>
        public async Task<IReadOnlyList<ChainLink>> RouteSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken)
        {
            var current = Chain;
            IReadOnlyList<Petals.Routing.RouteSegment> route;
            try
            {
                route = Sequence.RouteInference(batchSize, maxLength);
            }
            catch (RemoteChainException)
            {
                return current;
            }

            if (route.Count == current.Length && route.Select((r, i) => string.Equals(r.Server.PeerId, current[i].PeerId, StringComparison.Ordinal) && r.Blocks == current[i].Blocks).All(same => same))
            {
                return current;
            }

            var links = await RouteWithRetriesAsync(new BlockRange(0, _owner.Config.NumLayers), batchSize, maxLength, forward: false, new RecoveryAttempts(), cancellationToken).ConfigureAwait(false);
            lock (_lock)
            {
                Volatile.Write(ref _chain, [.. links]);
            }

            return links;
        }

        /// <summary>
        /// Takes a connection that broke out of the pool (and aborts it), so that a replacement on the same server gets a new
        /// one: a send can fail on a broken stream before the read loop has marked the connection failed. A connection that
        /// only carried an error or a late answer stays.
        /// </summary>
        private void Retire(RemoteSpanConnection connection, Exception error)
        {
            if (error is not (TransportException or IOException or ObjectDisposedException or ProtocolException { IsConnectionFatal: true }))
            {
                return;
            }

            var peer = connection.Connection.Remote.PeerId;
            lock (_lock)
            {
                if (_pool.TryGetValue(peer, out var pooled) && ReferenceEquals(pooled, connection))
                {
                    _pool.Remove(peer);
                }
            }

            connection.Connection.Abort("the client gave the connection up after a failure");
        }

        /// <summary>Records that <paramref name="link"/>'s server failed: banned, logged, listed in <paramref name="attempts"/>; gives up past the attempt bound.</summary>
        /// <exception cref="RemoteChainException">When this was one failure more than <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/>; lists every failure.</exception>
        public void Failed(ChainLink link, Exception error, RecoveryAttempts attempts)
        {
            Retire(link.Connection, error);
            var ban = Sequence.RecordFailure(link.PeerId);
            attempts.Add(link.PeerId, string.Create(CultureInfo.InvariantCulture,
                $"server {ChainPlanner.Short(link.PeerId)} at {link.Connection.Connection.RemoteAddress} (blocks {link.Blocks}) failed: {error.Message}"));
            ClientLog.ServerFailed(Sequence.Logger, link.PeerId, link.Connection.Connection.RemoteAddress.ToString(), link.Blocks.ToString(), Sequence.ModelId, ban.TotalSeconds, error);
            if (attempts.Count > Options.MaxRecoveryAttempts)
            {
                throw new RemoteChainException(Describe(
                    string.Create(CultureInfo.InvariantCulture, $"Gave up on model {Sequence.ModelId} after {attempts.Count} server failures in one step (MaxRecoveryAttempts is {Options.MaxRecoveryAttempts})."),
                    attempts), error);
            }
        }

        /// <summary>
        /// Routes <paramref name="blocks"/> (for a session of <paramref name="batchSize"/> × <paramref name="maxLength"/>,
        /// or a stateless call when <paramref name="forward"/>) and connects every segment, reusing pooled connections.
        /// A server that cannot be connected is banned and the blocks routed again; after the first failure each attempt
        /// waits <see cref="RemoteSequenceOptions.RecoveryBackoff"/>, doubling.
        /// </summary>
        /// <exception cref="RemoteChainException">When no route is left or the attempts are spent; lists every failure.</exception>
        public async Task<IReadOnlyList<ChainLink>> RouteWithRetriesAsync(BlockRange blocks, int batchSize, int maxLength, bool forward, RecoveryAttempts attempts, CancellationToken cancellationToken)
        {
            while (true)
            {
                ObjectDisposedException.ThrowIf(Volatile.Read(ref _owner._disposed) != 0, _owner);
                if (attempts.Count > 1)
                {
                    var factor = 1L << Math.Min(attempts.Count - 2, 5);
                    await Task.Delay(Options.RecoveryBackoff * factor, cancellationToken).ConfigureAwait(false);
                }

                var route = await RouteAsync(blocks, batchSize, maxLength, forward, attempts, cancellationToken).ConfigureAwait(false);
                var connecting = route.Select(s => AcquireAsync(s.Server, s.Blocks, cancellationToken)).ToArray();
                try
                {
                    await Task.WhenAll(connecting).ConfigureAwait(false);
                    return [.. connecting.Select((t, k) => new ChainLink(t.Result, route[k].Blocks))];
                }
                catch (Exception) when (!cancellationToken.IsCancellationRequested)
                {
                    // Each failed server is read from its task.
                }

                for (var k = 0; k < connecting.Length; k++)
                {
                    if (connecting[k].Exception?.InnerException is { } error)
                    {
                        var server = route[k].Server;
                        var ban = Sequence.RecordFailure(server.PeerId);
                        attempts.Add(server.PeerId, string.Create(CultureInfo.InvariantCulture,
                            $"server {ChainPlanner.Short(server.PeerId)} at {server.Address} (blocks {route[k].Blocks}) could not be connected: {error.Message}"));
                        ClientLog.ServerFailed(Sequence.Logger, server.PeerId, server.Address.ToString(), route[k].Blocks.ToString(), Sequence.ModelId, ban.TotalSeconds, error);
                    }
                }

                if (attempts.Count > Options.MaxRecoveryAttempts)
                {
                    throw new RemoteChainException(Describe(
                        string.Create(CultureInfo.InvariantCulture, $"Could not route blocks {blocks} of model {Sequence.ModelId} to a server that answers ({attempts.Count} failures; MaxRecoveryAttempts is {Options.MaxRecoveryAttempts})."),
                        attempts));
                }
            }
        }

        /// <summary>
        /// Routes <paramref name="blocks"/> around the servers that already failed in this step (they are banned, but a ban
        /// yields when nothing else covers a block, and a server that keeps failing must not be picked again while one
        /// banned earlier may have recovered). When only such servers are left, the step's first failure retries them at once
        /// (a block's only server may have failed transiently) without waiting for the discovery; later ones read the swarm
        /// again first (a replacement may have been announced since), and failing that the bans alone decide.
        /// </summary>
        private async Task<IReadOnlyList<Petals.Routing.RouteSegment>> RouteAsync(BlockRange blocks, int batchSize, int maxLength, bool forward, RecoveryAttempts attempts, CancellationToken cancellationToken)
        {
            var route = TryRoute(blocks, batchSize, maxLength, forward, attempts.Peers);
            if (route is null && attempts.Count <= 1)
            {
                // The step's first failure: a block's only server may have failed transiently; try it again at once.
                route = TryRoute(blocks, batchSize, maxLength, forward, null);
            }

            if (route is not null)
            {
                return route;
            }

            await Sequence.RefreshAsync(cancellationToken).ConfigureAwait(false);
            route = TryRoute(blocks, batchSize, maxLength, forward, attempts.Peers);
            if (route is not null)
            {
                return route;
            }

            try
            {
                return forward ? Sequence.RouteForward(null, blocks) : Sequence.RouteInference(batchSize, maxLength, null, blocks);
            }
            catch (RemoteChainException e) when (attempts.Count > 0)
            {
                throw new RemoteChainException(Describe($"No server is left for blocks {blocks}: {e.Message}", attempts), e);
            }
        }

        private IReadOnlyList<Petals.Routing.RouteSegment>? TryRoute(BlockRange blocks, int batchSize, int maxLength, bool forward, IReadOnlySet<string>? exclude)
        {
            try
            {
                return forward ? Sequence.RouteForward(exclude, blocks) : Sequence.RouteInference(batchSize, maxLength, exclude, blocks);
            }
            catch (RemoteChainException)
            {
                return null;
            }
        }

        /// <summary>
        /// A connection to <paramref name="server"/>: the pooled one while it works, else a new one checked against the
        /// announcement (peer id, span) and the model (hidden size, model id, codec) and pooled.
        /// </summary>
        private async Task<RemoteSpanConnection> AcquireAsync(ServerInfo server, BlockRange blocks, CancellationToken cancellationToken)
        {
            RemoteSpanConnection? retired = null;
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, _owner);
                if (_pool.TryGetValue(server.PeerId, out var pooled))
                {
                    if (!pooled.IsFailed)
                    {
                        return pooled;
                    }

                    _pool.Remove(server.PeerId);
                    _all.Remove(pooled);
                    _retiredSent += pooled.Connection.BytesSent;
                    _retiredReceived += pooled.Connection.BytesReceived;
                    retired = pooled;
                }
            }

            if (retired is not null)
            {
                await retired.DisposeAsync().ConfigureAwait(false);
            }

            var preamble = new ConnectionPreamble(Options.PeerId, Sequence.ModelId, Options.Limits.MaxFrameSize);
            var span = await RemoteSpanConnection.ConnectAsync(_transport, server.Address, preamble, Options, cancellationToken).ConfigureAwait(false);
            span.Blocks = blocks;
            if (AnnouncementProblems(span, server, _owner.Config, Sequence.ModelId, Options.Codec) is { } problems)
            {
                await span.DisposeAsync().ConfigureAwait(false);
                throw new RemoteChainException(problems);
            }

            lock (_lock)
            {
                if (_disposed)
                {
                    retired = span;
                }
                else
                {
                    if (_pool.TryGetValue(server.PeerId, out var raced) && !raced.IsFailed)
                    {
                        // Another session connected to the same server meanwhile: share that connection.
                        retired = span;
                        span = raced;
                    }
                    else
                    {
                        _pool[server.PeerId] = span;
                        _all.Add(span);
                    }
                }
            }

            if (retired is not null)
            {
                await retired.DisposeAsync().ConfigureAwait(false);
                ObjectDisposedException.ThrowIf(ReferenceEquals(retired, span), _owner);
            }

            return span;
        }

        public async ValueTask DisposeAsync()
        {
            RemoteSpanConnection[] all;
            lock (_lock)
            {
                _disposed = true;
                all = [.. _all];
            }

            foreach (var connection in all)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
        }

        private static string Describe(string headline, RecoveryAttempts attempts) =>
            new StringBuilder(headline).Append(" Failures: ").AppendJoin("; ", attempts.Lines).Append('.').ToString();
    }

    /// <summary>
    /// A fault-tolerant inference session (Algorithm 1): for every span of its chain it keeps the inputs sent there
    /// (batch × positions × hidden, at most <see cref="MaxLength"/> positions). When a span's server fails during a step,
    /// the session bans it, routes exactly that span's blocks again (possibly over several servers), and runs the
    /// replacements from position 0 over the kept inputs, in steps as large as each server takes, before the step goes on
    /// through the rest of the chain. The outputs of a replaced span for earlier positions are used only to fill the
    /// history of the next span when that span is new too; a span that kept its server keeps the inputs it had.
    /// </summary>
    internal sealed class RoutedSession : ITransformerSession
    {
        private readonly RemoteTransformerBlocks _owner;
        private readonly Recovery _recovery;
        private readonly Guid _sessionId = Guid.NewGuid();
        private readonly List<SpanState> _chain = [];
        private readonly List<PendingRecovery> _pending = [];
        private ulong _lastStepId;
        private bool _broken;
        private bool _disposed;

        private RoutedSession(RemoteTransformerBlocks owner, Recovery recovery, int batchSize, int maxLength)
        {
            _owner = owner;
            _recovery = recovery;
            BatchSize = batchSize;
            MaxLength = maxLength;
        }

        public int BatchSize { get; }

        public int MaxLength { get; }

        public int Position { get; private set; }

        /// <summary>The chain this session runs on now, in block order (tests and diagnostics).</summary>
        internal IReadOnlyList<RemoteSpanInfo> CurrentSpans => [.. _chain.Select(s => s.Link.Describe())];

        /// <summary>The most positions of input history any span of this session has room for (never more than <see cref="MaxLength"/>).</summary>
        internal int MaxHistoryPositions => _chain.Count == 0 ? 0 : _chain.Max(s => s.Capacity);

        public static async ValueTask<RoutedSession> OpenAsync(RemoteTransformerBlocks owner, Recovery recovery, int batchSize, int maxLength, CancellationToken cancellationToken)
        {
            var session = new RoutedSession(owner, recovery, batchSize, maxLength);
            foreach (var link in await recovery.RouteSessionAsync(batchSize, maxLength, cancellationToken).ConfigureAwait(false))
            {
                session._chain.Add(session.NewState(link, forCaller: true));
            }

            return session;
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        public async ValueTask ForwardAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken = default)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_broken)
            {
                throw new InvalidOperationException("An earlier step of this session failed and could not be recovered; open a new session.");
            }

            _owner.CheckShape(hidden.Length, BatchSize, tokenCount);
            if (Position + tokenCount > MaxLength)
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"The session holds {Position} of at most {MaxLength} positions and cannot take {tokenCount} more."));
            }

            try
            {
                await StepAsync(hidden, tokenCount, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                _broken = true;
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (var state in _chain)
            {
                await CloseAsync(state).ConfigureAwait(false);
            }

            _chain.Clear();
        }

        private SpanState NewState(ChainLink link, bool forCaller)
        {
            var info = link.Connection.Info;
            var tokens = info.MaxBatchSize / BatchSize;
            string? problem = null;
            if (tokens < 1)
            {
                problem = string.Create(CultureInfo.InvariantCulture, $"{link.Connection.Name} takes at most {info.MaxBatchSize} batch x tokens per step, less than one token for each of {BatchSize} sequences.");
            }
            else if (MaxLength > info.MaxSessionLength)
            {
                problem = string.Create(CultureInfo.InvariantCulture, $"{link.Connection.Name} holds sessions of at most {info.MaxSessionLength} tokens.");
            }

            if (problem is not null)
            {
                // The caller's arguments do not fit the chain it connected; a replacement that does not fit is just unusable.
                throw forCaller
                    ? new ArgumentOutOfRangeException(tokens < 1 ? "batchSize" : "maxLength", problem)
                    : new RemoteChainException(problem);
            }

            return new SpanState(link, tokens);
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        private async ValueTask StepAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken)
        {
            var from = Position;
            var to = Position + tokenCount;
            var first = _chain[0];
            first.EnsureCapacity(to, BatchSize, _owner.Config.HiddenSize, MaxLength);
            CopyPositions(hidden.Span, tokenCount, 0, first.History, first.Capacity, from, tokenCount, BatchSize, _owner.Config.HiddenSize);
            first.HistoryPositions = to;
            RecoveryAttempts? attempts = null;
            for (var i = 0; i < _chain.Count;)
            {
                var state = _chain[i];
                try
                {
                    await RunSpanAsync(state, i + 1 < _chain.Count ? _chain[i + 1] : null, hidden, from, to, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (IsServerFailure(e, cancellationToken))
                {
                    attempts ??= new RecoveryAttempts();
                    i = await ReplaceAsync(i, e, from, to, attempts, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                i++;
                for (var p = _pending.Count - 1; p >= 0; p--)
                {
                    // The step has run through the failed blocks (a replacement may have been joined with the next segment).
                    if (state.Link.Blocks.End >= _pending[p].Blocks.End)
                    {
                        var resumed = _pending[p].Resume();
                        _pending.RemoveAt(p);
                        _owner.OnRecovered(resumed);
                    }
                }
            }

            Position = to;
        }

        /// <summary>
        /// Runs positions from the span's cache length (its server's, 0 for a replacement) up to <paramref name="to"/>
        /// through its server, writing the outputs into the next span's history (positions it does not hold yet) or, for the
        /// last span, the caller's buffer (the step's positions).
        /// </summary>
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        private async ValueTask RunSpanAsync(SpanState state, SpanState? next, Memory<float> hidden, int stepFrom, int to, CancellationToken cancellationToken)
        {
            var connection = state.Link.Connection;
            var width = _owner.Config.HiddenSize;
            var codec = _owner._options.Codec;
            if (!state.Opened)
            {
                state.Stream = connection.Connection.NewStreamId();
                connection.TrackSession(state.Stream);
                state.Opened = true;
                await connection.SendOneWayAsync(state.Stream, new InferenceOpen(_sessionId, state.Link.Blocks, MaxLength, codec), cancellationToken).ConfigureAwait(false);
            }

            var longest = Math.Min(state.MaxTokensPerStep, to - state.CachedPositions);
            var scratch = ArrayPool<float>.Shared.Rent(BatchSize * longest * width);
            try
            {
                for (var start = state.CachedPositions; start < to;)
                {
                    var count = Math.Min(state.MaxTokensPerStep, to - start);
                    var part = scratch.AsMemory(0, BatchSize * count * width);
                    CopyPositions(state.History, state.Capacity, start, part.Span, count, 0, count, BatchSize, width);
                    var stepId = ++_lastStepId;
                    var call = connection.Register(state.Call, state.Stream, part);
                    await connection.SendAsync(call, new InferenceStep(stepId, start, WireTensor.FromValues(new TensorShape(BatchSize, count, width), part, codec)), cancellationToken).ConfigureAwait(false);
                    var outcome = await connection.WaitAsync(call, cancellationToken).ConfigureAwait(false);
                    if (outcome.StepId != stepId || outcome.Position != start + count)
                    {
                        throw new ProtocolException(
                            ProtocolErrorCode.OutOfOrder,
                            string.Create(CultureInfo.InvariantCulture, $"{connection.Name} answered step {stepId} as step {outcome.StepId} at position {outcome.Position}; expected position {start + count}."));
                    }

                    state.CachedPositions = start + count;
                    if (next is not null)
                    {
                        var write = Math.Max(start, next.HistoryPositions);
                        if (write < start + count)
                        {
                            next.EnsureCapacity(start + count, BatchSize, width, MaxLength);
                            CopyPositions(part.Span, count, write - start, next.History, next.Capacity, write, start + count - write, BatchSize, width);
                            next.HistoryPositions = start + count;
                        }
                    }
                    else
                    {
                        var write = Math.Max(start, stepFrom);
                        if (write < start + count)
                        {
                            CopyPositions(part.Span, count, write - start, hidden.Span, to - stepFrom, write - stepFrom, start + count - write, BatchSize, width);
                        }
                    }

                    start += count;
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(scratch);
            }

            if (!state.Succeeded)
            {
                state.Succeeded = true;
                _recovery.Sequence.RecordSuccess(state.Link.PeerId);
            }
        }

        /// <summary>Replaces the failed span <paramref name="index"/> by servers routed for its blocks; the first takes over its history.</summary>
        private async ValueTask<int> ReplaceAsync(int index, Exception error, int stepFrom, int to, RecoveryAttempts attempts, CancellationToken cancellationToken)
        {
            var detected = Stopwatch.GetTimestamp();
            var detectedAt = DateTimeOffset.UtcNow;
            var failed = _chain[index];
            _ = CloseAsync(failed);
            _recovery.Failed(failed.Link, error, attempts);
            var attempt = attempts.Count;
            while (true)
            {
                var links = await _recovery.RouteWithRetriesAsync(failed.Link.Blocks, BatchSize, MaxLength, forward: false, attempts, cancellationToken).ConfigureAwait(false);
                var states = new List<SpanState>(links.Count);
                foreach (var link in links)
                {
                    try
                    {
                        states.Add(NewState(link, forCaller: false));
                    }
                    catch (RemoteChainException unusable)
                    {
                        // A replacement that cannot hold this session counts as a failure of that server.
                        _recovery.Failed(link, unusable, attempts);
                        break;
                    }
                }

                if (states.Count < links.Count)
                {
                    continue;
                }

                var before = _chain.Select(s => s.Link).ToArray();
                states[0].TakeHistory(failed);
                _chain.RemoveAt(index);
                _chain.InsertRange(index, states);
                var resume = MergeNeighbors(index, states.Count);
                _recovery.FollowChain(before, [.. _chain.Select(s => s.Link)]);
                _pending.Add(new PendingRecovery(stepFrom, failed.Link, error, [.. links.Select(l => l.Describe())], to, attempt, detected, detectedAt));
                return resume;
            }
        }

        /// <summary>
        /// Joins the replacements at <paramref name="index"/> (<paramref name="count"/> of them) with a neighbor on the
        /// same server whose blocks touch theirs: one segment instead of two saves a hop on every later token (without
        /// this, repeated recoveries fragment the chain). The joined segment starts from position 0 over the earlier
        /// segment's history, like any replacement. Returns the index the step resumes at.
        /// </summary>
        private int MergeNeighbors(int index, int count)
        {
            var last = index + count - 1;
            if (last + 1 < _chain.Count && CanJoin(_chain[last], _chain[last + 1]))
            {
                var next = _chain[last + 1];
                var joined = NewState(new ChainLink(_chain[last].Link.Connection, new BlockRange(_chain[last].Link.Blocks.Start, next.Link.Blocks.End)), forCaller: false);
                joined.TakeHistory(_chain[last]);
                _chain[last] = joined;
                _chain.RemoveAt(last + 1);
                _ = CloseAsync(next);
            }

            if (index > 0 && CanJoin(_chain[index - 1], _chain[index]))
            {
                var previous = _chain[index - 1];
                var joined = NewState(new ChainLink(_chain[index].Link.Connection, new BlockRange(previous.Link.Blocks.Start, _chain[index].Link.Blocks.End)), forCaller: false);
                joined.TakeHistory(previous);
                _chain[index - 1] = joined;
                _chain.RemoveAt(index);
                _ = CloseAsync(previous);
                return index - 1;
            }

            return index;
        }

        private static bool CanJoin(SpanState first, SpanState second) =>
            ReferenceEquals(first.Link.Connection, second.Link.Connection) && first.Link.Blocks.End == second.Link.Blocks.Start;

        private static async Task CloseAsync(SpanState state)
        {
            if (!state.Opened)
            {
                return;
            }

            var connection = state.Link.Connection;
            connection.ForgetSession(state.Stream);
            if (connection.IsFailed)
            {
                // The server frees the session when the connection drops.
                return;
            }

            try
            {
                using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await connection.SendOneWayAsync(state.Stream, new InferenceClose(), wait.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TransportException or ProtocolException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                // The server frees the session when the connection drops or the session idles out.
            }
        }

        /// <summary>
        /// Copies <paramref name="count"/> positions of every batch row from <paramref name="source"/> (laid out
        /// [batch, <paramref name="sourcePositions"/>, width]) at <paramref name="sourceAt"/> to
        /// <paramref name="destination"/> ([batch, <paramref name="destinationPositions"/>, width]) at <paramref name="destinationAt"/>.
        /// </summary>
        private static void CopyPositions(ReadOnlySpan<float> source, int sourcePositions, int sourceAt, Span<float> destination, int destinationPositions, int destinationAt, int count, int batch, int width)
        {
            for (var b = 0; b < batch; b++)
            {
                source.Slice(((b * sourcePositions) + sourceAt) * width, count * width)
                    .CopyTo(destination[(((b * destinationPositions) + destinationAt) * width)..]);
            }
        }

        /// <summary>One span of the session's chain: its server, stream, cache length and input history.</summary>
        private sealed class SpanState(ChainLink link, int maxTokensPerStep)
        {
            public ChainLink Link { get; } = link;

            public int MaxTokensPerStep { get; } = maxTokensPerStep;

            public RemoteSpanConnection.PendingCall Call { get; } = new();

            public uint Stream { get; set; }

            public bool Opened { get; set; }

            public bool Succeeded { get; set; }

            /// <summary>Positions the server's cache holds for this session.</summary>
            public int CachedPositions { get; set; }

            /// <summary>The inputs sent (or to send) to this span, [batch, <see cref="Capacity"/>, width].</summary>
            public float[] History { get; private set; } = [];

            /// <summary>The positions <see cref="History"/> has room for (never more than the session's max length).</summary>
            public int Capacity { get; private set; }

            /// <summary>The positions of <see cref="History"/> filled.</summary>
            public int HistoryPositions { get; set; }

            public void EnsureCapacity(int positions, int batch, int width, int maxLength)
            {
                if (positions <= Capacity)
                {
                    return;
                }

                var capacity = Math.Min(maxLength, Math.Max(positions, Math.Max(Capacity * 2, 16)));
                var grown = new float[(long)batch * capacity * width];
                for (var b = 0; b < batch; b++)
                {
                    History.AsSpan(b * Capacity * width, HistoryPositions * width).CopyTo(grown.AsSpan(b * capacity * width));
                }

                History = grown;
                Capacity = capacity;
            }

            public void TakeHistory(SpanState failed)
            {
                History = failed.History;
                Capacity = failed.Capacity;
                HistoryPositions = failed.HistoryPositions;
                failed.History = [];
                failed.Capacity = 0;
                failed.HistoryPositions = 0;
            }
        }

        /// <summary>A recovery whose replacements have not answered the failed step yet.</summary>
        private sealed class PendingRecovery(int position, ChainLink failed, Exception error, IReadOnlyList<RemoteSpanInfo> replacements, int replayed, int attempt, long detected, DateTimeOffset detectedAt)
        {
            public BlockRange Blocks => failed.Blocks;

            public SpanRecovery Resume() => new(
                position,
                failed.Blocks,
                failed.PeerId,
                failed.Connection.Connection.RemoteAddress,
                error,
                replacements,
                replayed,
                attempt,
                detectedAt,
                detectedAt + Stopwatch.GetElapsedTime(detected),
                Stopwatch.GetElapsedTime(detected));
        }
    }
}
