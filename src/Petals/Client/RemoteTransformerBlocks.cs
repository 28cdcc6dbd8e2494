using System.Buffers;
using System.Globalization;
using System.Text;
using Petals.Discovery;
using Petals.Health;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <summary>
/// All blocks of a model on remote servers: a remote sequence. Hidden states go through a chain of servers in block
/// order, each running a contiguous range of blocks. Generation code uses it through <see cref="ITransformerBlocks"/>
/// exactly as it uses local blocks.
/// </summary>
/// <remarks>
/// <para>
/// One path for every chain: servers found through a discovery (<see cref="ConnectAsync(ITransport, SwarmSequenceManager, ModelConfig, RemoteSequenceOptions?, CancellationToken)"/>)
/// or given by address (<see cref="ConnectAsync(ITransport, IReadOnlyList{PeerAddress}, ModelConfig, string, RemoteSequenceOptions?, CancellationToken)"/>,
/// which routes over a <see cref="StaticPeerDiscovery"/> of those servers) are routed by the sequence manager's router,
/// connected through one pool and checked before any tensor is sent; sessions and stateless calls recover from server
/// failures (Algorithm 1, <c>docs/routing.md</c>) unless <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/> is 0.
/// </para>
/// <para>Thread-safe for opening sessions and stateless forward calls; each session is used by one caller at a time.</para>
/// </remarks>
public sealed partial class RemoteTransformerBlocks : ITransformerBlocks, IAsyncDisposable, IDisposable
{
    private readonly RemoteSequenceOptions _options;
    private readonly SwarmSequenceManager _sequence;
    private readonly bool _ownsSequence;
    private readonly ConnectionPool _pool;
    private readonly ChainRepair _repair;
    private readonly Lock _lock = new();
    private ChainLink[] _chain;
    private long _recoveries;
    private int _disposed;

    private RemoteTransformerBlocks(ModelConfig config, RemoteSequenceOptions options, SwarmSequenceManager sequence, bool ownsSequence, ConnectionPool pool, IReadOnlyList<ChainLink> chain)
    {
        Config = config;
        _options = options;
        _sequence = sequence;
        _ownsSequence = ownsSequence;
        _pool = pool;
        _repair = new ChainRepair(sequence, pool, options);
        _chain = [.. chain];
        Verifier = new OutputVerifier(this, _repair);
    }

    /// <summary>
    /// Raised after each recovery of a session of this sequence, once the replacement servers have rebuilt their caches
    /// and answered the failed step (on the thread running that step, before the step returns).
    /// </summary>
    public event EventHandler<SpanRecovery>? SpanRecovered;

    /// <summary>
    /// Raised for each spot check (<see cref="RemoteSequenceOptions.Verification"/>) that found a server's output wrong or
    /// disputed, after the peers proven wrong were banned and before the session replaces the checked server (on the
    /// thread running the step).
    /// </summary>
    public event EventHandler<OutputMismatch>? VerificationFailed;

    /// <inheritdoc />
    public ModelConfig Config { get; }

    /// <summary>What the spot checks of this sequence's sessions did so far.</summary>
    public VerificationStatistics Verification => Verifier.Statistics;

    /// <summary>
    /// The servers of the chain new sessions start on, in block order. A recovery replaces the failed server here too
    /// (see <see cref="SpanRecovered"/>), so with one session at a time this is the chain the session runs on.
    /// </summary>
    public IReadOnlyList<RemoteSpanInfo> Spans => [.. Volatile.Read(ref _chain).Select(l => l.Describe())];

    /// <summary>Bytes sent to all servers so far (frames, headers and preambles included, closed connections too).</summary>
    public long BytesSent => _pool.BytesSent;

    /// <summary>Bytes received from all servers so far.</summary>
    public long BytesReceived => _pool.BytesReceived;

    /// <summary>How many times sessions of this sequence replaced a failed server so far.</summary>
    public long Recoveries => Interlocked.Read(ref _recoveries);

    /// <summary>The servers' view, routing and health this sequence uses (for a sequence given by address, over a <see cref="StaticPeerDiscovery"/>).</summary>
    public SwarmSequenceManager Sequence => _sequence;

    /// <summary>The options.</summary>
    internal RemoteSequenceOptions Options => _options;

    /// <summary>
    /// Where the sessions' input histories come from and go back to: a pool of this sequence's own whose buckets are
    /// shared across threads (a step's continuations hop threads, which defeats the shared pool's per-thread caches),
    /// keeping up to 16 buffers per size between sessions.
    /// </summary>
    internal ArrayPool<float> HistoryBuffers { get; } = ArrayPool<float>.Create(maxArrayLength: 1 << 30, maxArraysPerBucket: 16);

    /// <summary>The spot checks of this sequence's sessions.</summary>
    internal OutputVerifier Verifier { get; }

    /// <summary>The pool of connections (tests).</summary>
    internal ConnectionPool Pool => _pool;

    /// <summary>
    /// Connects to the route <paramref name="sequence"/> chooses (call <see cref="SwarmSequenceManager.StartAsync"/>
    /// first): pings servers (<see cref="SwarmSequenceManager.PingAsync"/>), routes with
    /// <see cref="SwarmSequenceManager.RouteInference"/> (segments may be sub-ranges of the servers' spans) and connects
    /// every segment, each checked against its announcement (peer id, span) and the model (id, hidden size, codec). A
    /// server that cannot be reached, refuses, or does not match is reported to <see cref="SwarmSequenceManager.Health"/>
    /// (banned), excluded, and the model routed again, up to <see cref="SwarmSequenceOptions.MaxChainAttempts"/> routes;
    /// the servers of the connected route are reported healthy.
    /// </summary>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="sequence">The swarm's servers of the model; its <see cref="SwarmSequenceManager.ModelId"/> is named in handshakes. It must outlive the returned sequence.</param>
    /// <param name="config">The model's configuration; its block count must be the manager's.</param>
    /// <param name="options">Connection and recovery options; defaults when null.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The sequence, connected.</returns>
    /// <exception cref="ArgumentException">The model's block count is not the manager's, an option is out of range, or the verification's local blocks belong to another model.</exception>
    /// <exception cref="RemoteChainException">
    /// When no chain of online servers covers the model (naming the uncovered blocks), or every chain tried failed (listing
    /// each failed server and why).
    /// </exception>
    public static Task<RemoteTransformerBlocks> ConnectAsync(
        ITransport transport,
        SwarmSequenceManager sequence,
        ModelConfig config,
        RemoteSequenceOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(sequence);
        ArgumentNullException.ThrowIfNull(config);
        if (config.NumLayers != sequence.BlockCount)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"The model has {config.NumLayers} blocks but the sequence manager of {sequence.ModelId} routes {sequence.BlockCount}."),
                nameof(config));
        }

        options ??= new RemoteSequenceOptions();
        options.Validate();
        CheckLocalExecutor(options, config);
        return ConnectCoreAsync(transport, sequence, ownsSequence: false, new ConnectionPool(transport, config, sequence.ModelId, options), config, options, ping: true, cancellationToken);
    }

    /// <summary>
    /// Connects to every server in <paramref name="peers"/>, asks each for its info, checks that each serves this model
    /// (id, hidden size, codec) and that together they cover every block, then routes over them as over a swarm (a
    /// <see cref="StaticPeerDiscovery"/> of exactly these servers): servers whose spans overlap are used for sub-ranges,
    /// and servers with the same blocks stand in for each other when one fails.
    /// </summary>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="peers">The servers' addresses, in any order.</param>
    /// <param name="config">The model's configuration (from the locally loaded embeddings and head).</param>
    /// <param name="modelId">The model id named in the handshake (<see cref="Formats.ModelIdentity"/>).</param>
    /// <param name="options">Connection and recovery options; defaults when null.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The sequence, connected.</returns>
    /// <exception cref="ArgumentException">No address is given, an option is out of range, or the verification's local blocks belong to another model.</exception>
    /// <exception cref="RemoteChainException">When the servers leave blocks uncovered, serve another model or hidden size, or refuse the codec; lists every problem and every server's span.</exception>
    /// <exception cref="ProtocolException">When a handshake fails (another protocol version or model).</exception>
    /// <exception cref="TransportException">When a server cannot be reached.</exception>
    /// <exception cref="TimeoutException">When a server does not answer within <see cref="RemoteSequenceOptions.ConnectTimeout"/>.</exception>
    public static async Task<RemoteTransformerBlocks> ConnectAsync(
        ITransport transport,
        IReadOnlyList<PeerAddress> peers,
        ModelConfig config,
        string modelId,
        RemoteSequenceOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(peers);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        if (peers.Count == 0)
        {
            throw new ArgumentException("At least one server address is required.", nameof(peers));
        }

        options ??= new RemoteSequenceOptions();
        options.Validate();
        CheckLocalExecutor(options, config);
        var pool = new ConnectionPool(transport, config, modelId, options, checkPeerIds: false);
        SwarmSequenceManager? sequence = null;
        try
        {
            var servers = await FixedPeers.ConnectAsync(pool, peers, config, modelId, options.Codec, cancellationToken, options.RequiredQuantization).ConfigureAwait(false);
            sequence = new SwarmSequenceManager(new StaticPeerDiscovery(modelId, config.NumLayers, servers, options.PeerId), modelId, config.NumLayers);
            await sequence.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            if (sequence is not null)
            {
                await sequence.DisposeAsync().ConfigureAwait(false);
            }

            await pool.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return await ConnectCoreAsync(transport, sequence, ownsSequence: true, pool, config, options, ping: false, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    /// <remarks>
    /// The session is routed for its cache need (<paramref name="batchSize"/> × <paramref name="maxLength"/> tokens;
    /// servers whose announced free cache cannot hold it are avoided). The servers reserve their caches on the first
    /// step, so an exhausted cache surfaces from the first <see cref="ITransformerSession.ForwardAsync"/>. The session is
    /// fault-tolerant (Algorithm 1 of the Petals paper): it keeps the inputs it sent to each server, and when one fails
    /// (connection lost, no answer within <see cref="RemoteSequenceOptions.RequestTimeout"/>, silent past
    /// <see cref="RemoteSequenceOptions.LivenessTimeout"/>, an error, a malformed answer) it reports it, routes exactly
    /// its blocks again, replays those inputs to the replacements and goes on with the same step; see <c>docs/routing.md</c>.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">A server of the chain takes less than one token per sequence, or shorter sessions.</exception>
    public async ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        cancellationToken.ThrowIfCancellationRequested();
        var links = await RouteSessionAsync(batchSize, maxLength, cancellationToken).ConfigureAwait(false);
        return RemoteSession.Open(this, _repair, links, batchSize, maxLength);
    }

    /// <summary>
    /// Runs hidden states through every block without a session (no cache). Each call is routed on its own, spreading
    /// calls over the servers by throughput (<see cref="SwarmSequenceManager.RouteForward"/>); a server that fails is
    /// reported and its blocks routed again and retried from their saved input, up to
    /// <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/> times. A batch larger than a server takes per call
    /// (its <c>MaxBatchTokens</c>) is sent to it in chunks of whole sequences.
    /// </summary>
    /// <param name="hidden">Hidden states <c>[batchSize, tokenCount, HiddenSize]</c>, overwritten with the last block's outputs.</param>
    /// <param name="batchSize">Number of sequences, at least 1.</param>
    /// <param name="tokenCount">Positions per sequence (0 to tokenCount-1), at least 1.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when the outputs are in <paramref name="hidden"/>.</returns>
    /// <exception cref="ArgumentException">When the buffer does not hold exactly <c>batchSize * tokenCount * HiddenSize</c> values, or holds a NaN or an infinity.</exception>
    /// <exception cref="ProtocolException">With recovery off, when a server answers with an error; the message names the server.</exception>
    /// <exception cref="RemoteChainException">When the recovery attempts are spent; lists every failure.</exception>
    public async ValueTask ForwardAsync(Memory<float> hidden, int batchSize, int tokenCount, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        CheckShape(hidden, batchSize, tokenCount);
        var attempts = new RecoveryAttempts();
        var links = await _repair.RouteAsync(new BlockRange(0, Config.NumLayers), batchSize, 0, forward: true, attempts, cancellationToken).ConfigureAwait(false);

        // The input of the segment being run, put back when its server fails (a failed call may have written part of it);
        // without recovery there is no retry to keep it for.
        var input = _options.MaxRecoveryAttempts > 0 ? ArrayPool<float>.Shared.Rent(hidden.Length) : null;
        try
        {
            for (var i = 0; i < links.Count;)
            {
                var link = links[i];
                if (input is not null)
                {
                    hidden.Span.CopyTo(input);
                }

                try
                {
                    // In chunks of whole sequences when the batch exceeds what the server takes per call.
                    await CallForwardAsync(link, hidden, batchSize, tokenCount, adaptation: null, cancellationToken, training: false).ConfigureAwait(false);
                    _sequence.Health.ReportSuccess(link.PeerId);
                    i++;
                }
                catch (Exception e) when (PeerFailureClassifier.Classify(e, cancellationToken) is { } kind)
                {
                    _repair.Failed(link, e, kind, attempts); // rethrows the error itself when recovery is off (input is null)
                    input!.AsSpan(0, hidden.Length).CopyTo(hidden.Span);
                    var replacements = await _repair.RouteAsync(link.Blocks, batchSize, 0, forward: true, attempts, cancellationToken).ConfigureAwait(false);
                    links = [.. links.Take(i), .. replacements, .. links.Skip(i + 1)];
                }
            }
        }
        finally
        {
            if (input is not null)
            {
                ArrayPool<float>.Shared.Return(input);
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

        await _pool.DisposeAsync().ConfigureAwait(false);
        if (_ownsSequence)
        {
            await _sequence.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>Checks that <paramref name="hidden"/> holds exactly <c>batch × tokens × hidden</c> values (the message local blocks give too).</summary>
    internal void CheckShape(Memory<float> hidden, int batchSize, int tokenCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
        var expected = (long)batchSize * tokenCount * Config.HiddenSize;
        if (hidden.Length != expected)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"Hidden states hold {hidden.Length} values; expected batch {batchSize} x tokens {tokenCount} x hidden {Config.HiddenSize} = {expected}."),
                nameof(hidden));
        }

        // Servers refuse NaN and infinities (non_finite_input); refusing here names the caller's own buffer and sends nothing.
        var bad = Numerics.FiniteValues.IndexOfNonFinite(hidden.Span);
        if (bad >= 0)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"Hidden states hold {Numerics.FiniteValues.Describe(hidden.Span, bad, [batchSize, tokenCount, Config.HiddenSize])}; servers refuse non-finite inputs, so nothing was sent."),
                nameof(hidden));
        }
    }

    /// <summary>Checks that the trusted blocks of <see cref="VerificationOptions.LocalExecutor"/> belong to this model (hidden size, block count).</summary>
    /// <exception cref="ArgumentException">They do not; the message says how.</exception>
    private static void CheckLocalExecutor(RemoteSequenceOptions options, ModelConfig config)
    {
        if (options.Verification.LocalExecutor is { } local && (local.Config.HiddenSize != config.HiddenSize || local.Config.NumLayers != config.NumLayers))
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"Verification.LocalExecutor runs a model of hidden size {local.Config.HiddenSize} and {local.Config.NumLayers} blocks; this model has hidden size {config.HiddenSize} and {config.NumLayers} blocks."),
                nameof(options));
        }
    }

    /// <summary>Makes <paramref name="after"/> the chain new sessions start on if it was <paramref name="before"/> (a session's chain before its recovery).</summary>
    internal void FollowChain(ChainLink[] before, ChainLink[] after)
    {
        lock (_lock)
        {
            if (_chain.AsSpan().SequenceEqual(before))
            {
                Volatile.Write(ref _chain, after);
            }
        }
    }

    /// <summary>Counts a recovery and raises <see cref="SpanRecovered"/>.</summary>
    internal void OnRecovered(SpanRecovery recovery)
    {
        Interlocked.Increment(ref _recoveries);
        SpanRecovered?.Invoke(this, recovery);
    }

    /// <summary>Raises <see cref="VerificationFailed"/>.</summary>
    internal void OnVerificationFailed(OutputMismatch mismatch) => VerificationFailed?.Invoke(this, mismatch);

    /// <summary>
    /// Routes, connects and checks a chain, excluding and routing around servers that fail, up to
    /// <see cref="SwarmSequenceOptions.MaxChainAttempts"/> routes. The pool is disposed when this fails.
    /// </summary>
    private static async Task<RemoteTransformerBlocks> ConnectCoreAsync(
        ITransport transport,
        SwarmSequenceManager sequence,
        bool ownsSequence,
        ConnectionPool pool,
        ModelConfig config,
        RemoteSequenceOptions options,
        bool ping,
        CancellationToken cancellationToken)
    {
        try
        {
            if (ping)
            {
                // Unreachable servers simply get no measurement (the router assumes an unknown RTT for them); connecting decides.
                await sequence.PingAsync(transport, options.PeerId, cancellationToken).ConfigureAwait(false);
            }

            var repair = new ChainRepair(sequence, pool, options);
            var attempts = new RecoveryAttempts();
            for (var attempt = 1; attempt <= sequence.Options.MaxChainAttempts; attempt++)
            {
                IReadOnlyList<Petals.Routing.RouteSegment> route;
                try
                {
                    route = sequence.RouteInference(1, 0, attempts.Peers, requiredQuantization: options.RequiredQuantization);
                }
                catch (RemoteChainException) when (attempt == 1)
                {
                    // The view may predate servers that announced since (or list expired ones): read the swarm again, once.
                    await sequence.RefreshAsync(cancellationToken).ConfigureAwait(false);
                    route = sequence.RouteInference(1, 0, attempts.Peers, requiredQuantization: options.RequiredQuantization);
                }
                catch (RemoteChainException e) when (attempts.Count > 0)
                {
                    throw new RemoteChainException(attempts.Describe($"No chain is left after excluding the servers that failed: {e.Message}"), e);
                }

                var (links, failures) = await repair.ConnectAsync(route, cancellationToken).ConfigureAwait(false);
                if (links is not null)
                {
                    foreach (var segment in route)
                    {
                        sequence.Health.ReportSuccess(segment.Server.PeerId);
                    }

                    ClientLog.ChainConnected(sequence.Logger, route.Count, sequence.ModelId, string.Join(", ", route.Select(s => $"{s.Blocks} by {s.Server.PeerId} at {s.Server.Address}")));
                    return new RemoteTransformerBlocks(config, options, sequence, ownsSequence, pool, links);
                }

                foreach (var (segment, error, kind) in failures)
                {
                    var server = segment.Server;
                    ClientLog.ServerExcluded(sequence.Logger, server.PeerId, server.Address.ToString(), segment.Blocks.ToString(), sequence.ModelId, error.Message);
                    sequence.Health.ReportFailure(server.PeerId, kind);
                    attempts.Add(server.PeerId, string.Create(CultureInfo.InvariantCulture, $"attempt {attempt}: server {PeerIds.Short(server.PeerId)} at {server.Address} (blocks {segment.Blocks}): {error.Message}"));
                }
            }

            throw new RemoteChainException(attempts.Describe(
                string.Create(CultureInfo.InvariantCulture, $"Every chain of model {sequence.ModelId} tried failed ({sequence.Options.MaxChainAttempts} attempts).")));
        }
        catch
        {
            await pool.DisposeAsync().ConfigureAwait(false);
            if (ownsSequence)
            {
                await sequence.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    /// <summary>
    /// The chain for a new session of <paramref name="batchSize"/> × <paramref name="maxLength"/>: routed with that
    /// cache need (a server whose announced free cache cannot hold it is avoided), connected through the pool, and
    /// made the chain new sessions start on. The current chain when the router picks it again, or when the swarm view
    /// offers no route (its servers may still answer).
    /// </summary>
    private async Task<IReadOnlyList<ChainLink>> RouteSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken)
    {
        var current = Volatile.Read(ref _chain);
        IReadOnlyList<Petals.Routing.RouteSegment> route;
        try
        {
            route = _sequence.RouteInference(batchSize, maxLength, requiredQuantization: _options.RequiredQuantization);
        }
        catch (RemoteChainException)
        {
            return current;
        }

        if (route.Count == current.Length && route.Select((r, i) => string.Equals(r.Server.PeerId, current[i].PeerId, StringComparison.Ordinal) && r.Blocks == current[i].Blocks).All(same => same))
        {
            return current;
        }

        var links = await _repair.RouteAsync(new BlockRange(0, Config.NumLayers), batchSize, maxLength, forward: false, new RecoveryAttempts(), cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            Volatile.Write(ref _chain, [.. links]);
        }

        return links;
    }
}
