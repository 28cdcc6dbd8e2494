using System.Globalization;
using System.Text;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <summary>
/// All blocks of a model on a chain of remote servers, each running a contiguous span: hidden states go through the
/// servers in block order. Generation code uses it through <see cref="ITransformerBlocks"/> exactly as it uses the
/// local blocks.
/// </summary>
/// <remarks>
/// <c>ConnectAsync</c> checks the whole chain before any tensor is sent: every block covered exactly once, the
/// same model, the same hidden size, the wire codec accepted. Thread-safe for opening sessions and stateless forward
/// calls; each session is used by one caller at a time.
/// </remarks>
public sealed partial class RemoteTransformerBlocks : ITransformerBlocks, IAsyncDisposable, IDisposable
{
    private readonly RemoteSpanConnection[] _spans;
    private readonly RemoteSequenceOptions _options;
    private readonly RemoteSpanInfo[] _fixedSpans;
    private int _disposed;

    private RemoteTransformerBlocks(ModelConfig config, RemoteSpanConnection[] spans, RemoteSequenceOptions options)
    {
        Config = config;
        _spans = spans;
        _options = options;
        _fixedSpans = [.. spans.Select(s => new RemoteSpanInfo(s.Connection.RemoteAddress, s.Connection.Remote.PeerId, s.Info, s.Blocks))];
    }

    /// <inheritdoc />
    public ModelConfig Config { get; }

    /// <summary>
    /// The servers of the chain, in block order: the chain new sessions start on. For a chain connected through a
    /// <see cref="SwarmSequenceManager"/>, a recovery replaces the failed server here too (see <see cref="SpanRecovered"/>),
    /// so with one session at a time this is the chain the session runs on.
    /// </summary>
    public IReadOnlyList<RemoteSpanInfo> Spans => _recovery?.DescribeChain() ?? _fixedSpans;

    /// <summary>Bytes sent to all servers so far (frames, headers and preambles included).</summary>
    public long BytesSent => _recovery?.BytesSent ?? _spans.Sum(s => s.Connection.BytesSent);

    /// <summary>Bytes received from all servers so far.</summary>
    public long BytesReceived => _recovery?.BytesReceived ?? _spans.Sum(s => s.Connection.BytesReceived);

    /// <summary>
    /// Connects to every server in <paramref name="peers"/>, asks each for its info, and checks that together they form
    /// one chain over all blocks of the model.
    /// </summary>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="peers">The servers' addresses, in any order; they are sorted by the first block they serve.</param>
    /// <param name="config">The model's configuration (from the locally loaded embeddings and head).</param>
    /// <param name="modelId">The model id announced in the handshake (<see cref="Formats.ModelIdentity"/>).</param>
    /// <param name="options">Connection options; defaults when null.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The chain, connected.</returns>
    /// <exception cref="RemoteChainException">When the servers leave a gap, overlap, serve another model or hidden size, or refuse the codec.</exception>
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
        ArgumentNullException.ThrowIfNull(peers);
        if (peers.Count == 0)
        {
            throw new ArgumentException("At least one server address is required.", nameof(peers));
        }

        return await ConnectCoreAsync(transport, [.. peers.Select(p => (p, (BlockRange?)null))], config, modelId, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Connects to the server of every segment, asks each for its info, and checks that each segment's blocks lie within
    /// its server's span and that together the segments form one chain over all blocks of the model. Each server is
    /// then asked only for its segment's blocks: a server whose span overlaps its neighbors' can still be chained (e.g.
    /// servers of 0:3 and 2:5 as 0:3 + 3:5), which is how a client re-routes a failed span over partly overlapping servers.
    /// </summary>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="segments">
    /// Each server's address and the blocks to run there (its whole span or a non-empty range within it), in any order;
    /// they are sorted by their first block.
    /// </param>
    /// <param name="config">The model's configuration (from the locally loaded embeddings and head).</param>
    /// <param name="modelId">The model id announced in the handshake (<see cref="Formats.ModelIdentity"/>).</param>
    /// <param name="options">Connection options; defaults when null.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The chain, connected.</returns>
    /// <exception cref="ArgumentException">When there is no segment or a segment's blocks are empty.</exception>
    /// <exception cref="RemoteChainException">
    /// When a segment is not within its server's span, the segments leave a gap or overlap, or a server serves another
    /// model or hidden size or refuses the codec.
    /// </exception>
    /// <exception cref="ProtocolException">When a handshake fails (another protocol version or model).</exception>
    /// <exception cref="TransportException">When a server cannot be reached.</exception>
    /// <exception cref="TimeoutException">When a server does not answer within <see cref="RemoteSequenceOptions.ConnectTimeout"/>.</exception>
    public static async Task<RemoteTransformerBlocks> ConnectAsync(
        ITransport transport,
        IReadOnlyList<(PeerAddress Address, BlockRange Blocks)> segments,
        ModelConfig config,
        string modelId,
        RemoteSequenceOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(segments);
        if (segments.Count == 0)
        {
            throw new ArgumentException("At least one segment is required.", nameof(segments));
        }

        for (var i = 0; i < segments.Count; i++)
        {
            if (segments[i].Blocks.Count <= 0)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"Segment {i} ({segments[i].Address}) names no blocks."), nameof(segments));
            }
        }

        return await ConnectCoreAsync(transport, [.. segments.Select(s => (s.Address, (BlockRange?)s.Blocks))], config, modelId, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Connects to every server, sets the blocks asked of each (its span when null), sorts them by first block and checks the chain.</summary>
    private static async Task<RemoteTransformerBlocks> ConnectCoreAsync(
        ITransport transport,
        (PeerAddress Address, BlockRange? Blocks)[] segments,
        ModelConfig config,
        string modelId,
        RemoteSequenceOptions? options,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(modelId);
        options ??= new RemoteSequenceOptions();
        options.Validate();
        var preamble = new ConnectionPreamble(options.PeerId, modelId, options.Limits.MaxFrameSize);
        var connecting = segments.Select(p => RemoteSpanConnection.ConnectAsync(transport, p.Address, preamble, options, cancellationToken)).ToArray();
        try
        {
            await Task.WhenAll(connecting).ConfigureAwait(false);
        }
        catch
        {
            foreach (var task in connecting)
            {
                if (task.IsCompletedSuccessfully)
                {
                    await task.Result.DisposeAsync().ConfigureAwait(false);
                }
            }

            throw;
        }

        for (var i = 0; i < segments.Length; i++)
        {
            if (segments[i].Blocks is { } blocks)
            {
                connecting[i].Result.Blocks = blocks;
            }
        }

        var spans = connecting.Select(t => t.Result).OrderBy(s => s.Blocks.Start).ThenBy(s => s.Blocks.End).ToArray();
        try
        {
            CheckChain(spans, config, modelId, options.Codec);
        }
        catch
        {
            foreach (var span in spans)
            {
                await span.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }

        return new RemoteTransformerBlocks(config, spans, options);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Opens an inference stream on every server. The servers reserve their caches on the first step, so an
    /// exhausted cache surfaces as a <see cref="ProtocolException"/> (<c>cache_exhausted</c>) from the first
    /// <see cref="ITransformerSession.ForwardAsync"/>. On a chain connected through a <see cref="SwarmSequenceManager"/>
    /// the session is fault-tolerant (Algorithm 1 of the Petals paper): it keeps the inputs it sent to each server, and
    /// when one fails (connection lost, no answer within <see cref="RemoteSequenceOptions.RequestTimeout"/>, silent past
    /// <see cref="RemoteSequenceOptions.LivenessTimeout"/>, an error, a malformed answer) it bans it, routes exactly its
    /// blocks again, replays those inputs to the replacements and goes on with the same step; see <c>docs/routing.md</c>.
    /// </remarks>
    public async ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        if (_recovery is { } recovery)
        {
            return RoutedSession.Open(this, recovery, batchSize, maxLength);
        }

        var sessionId = Guid.NewGuid();
        var maxTokensPerStep = int.MaxValue;
        foreach (var span in _spans)
        {
            var tokens = span.Info.MaxBatchSize / batchSize;
            if (tokens < 1)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(batchSize),
                    batchSize,
                    string.Create(CultureInfo.InvariantCulture, $"{span.Name} takes at most {span.Info.MaxBatchSize} batch x tokens per step, less than one token for each of {batchSize} sequences."));
            }

            maxTokensPerStep = Math.Min(maxTokensPerStep, tokens);
        }

        var streams = new uint[_spans.Length];
        var opened = 0;
        try
        {
            for (; opened < _spans.Length; opened++)
            {
                var span = _spans[opened];
                if (maxLength > span.Info.MaxSessionLength)
                {
                    throw new ArgumentOutOfRangeException(
                        nameof(maxLength),
                        maxLength,
                        string.Create(CultureInfo.InvariantCulture, $"{span.Name} holds sessions of at most {span.Info.MaxSessionLength} tokens."));
                }

                streams[opened] = span.Connection.NewStreamId();
                span.TrackSession(streams[opened]);
                await span.SendOneWayAsync(streams[opened], new InferenceOpen(sessionId, span.Blocks, maxLength, _options.Codec), cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            if (opened < _spans.Length && streams[opened] != 0)
            {
                _spans[opened].ForgetSession(streams[opened]);
            }

            await CloseStreamsAsync(_spans, streams, opened).ConfigureAwait(false);
            throw;
        }

        return new RemoteSession(this, streams, batchSize, maxLength, maxTokensPerStep);
    }

    /// <summary>Runs hidden states through every block without a session (no cache): each server gets one stateless forward call.</summary>
    /// <param name="hidden">Hidden states <c>[batchSize, tokenCount, HiddenSize]</c>, overwritten with the last block's outputs.</param>
    /// <param name="batchSize">Number of sequences, at least 1.</param>
    /// <param name="tokenCount">Positions per sequence (0 to tokenCount-1), at least 1.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when the outputs are in <paramref name="hidden"/>.</returns>
    /// <exception cref="ArgumentException">When the buffer does not hold exactly <c>batchSize * tokenCount * HiddenSize</c> values.</exception>
    /// <exception cref="ProtocolException">When a server answers with an error; the message names the server.</exception>
    /// <remarks>
    /// On a chain connected through a <see cref="SwarmSequenceManager"/> each call is routed on its own, spreading calls
    /// over the swarm by throughput (<see cref="SwarmSequenceManager.RouteForward"/>); a server that fails is banned and its
    /// blocks routed again, up to <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/> times.
    /// </remarks>
    public async ValueTask ForwardAsync(Memory<float> hidden, int batchSize, int tokenCount, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        CheckShape(hidden.Length, batchSize, tokenCount);
        if (_recovery is { } recovery)
        {
            await ForwardRoutedAsync(recovery, hidden, batchSize, tokenCount, cancellationToken).ConfigureAwait(false);
            return;
        }

        var shape = new TensorShape(batchSize, tokenCount, Config.HiddenSize);
        foreach (var span in _spans)
        {
            var call = span.Register(new RemoteSpanConnection.PendingCall(), span.Connection.NewStreamId(), hidden);
            await span.SendAsync(call, new ForwardRequest(span.Blocks, _options.Codec, WireTensor.FromValues(shape, hidden, _options.Codec)), cancellationToken).ConfigureAwait(false);
            await span.WaitAsync(call, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (_recovery is { } recovery)
        {
            // The pool holds the chain's first connections too.
            await recovery.DisposeAsync().ConfigureAwait(false);
            return;
        }

        foreach (var span in _spans)
        {
            await span.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private static void CheckChain(RemoteSpanConnection[] spans, ModelConfig config, string modelId, WireCodec codec)
    {
        var problems = new List<string>();
        var next = 0;
        foreach (var span in spans)
        {
            var blocks = span.Blocks;
            AddServerProblems(span, config, modelId, codec, problems);
            if (blocks.Start > next)
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"no server covers blocks {next}:{blocks.Start} (the next, {span.Name}, starts at {blocks.Start})"));
            }
            else if (blocks.Start < next)
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"{span.Name} overlaps the previous server, which already covers blocks up to {next}"));
            }

            next = Math.Max(next, blocks.End);
        }

        if (next < config.NumLayers)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"no server covers blocks {next}:{config.NumLayers}"));
        }
        else if (next > config.NumLayers)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"the servers run blocks up to {next}, but the model has {config.NumLayers}"));
        }

        if (problems.Count > 0)
        {
            var message = new StringBuilder("The servers do not form one chain over the model's ")
                .Append(config.NumLayers.ToString(CultureInfo.InvariantCulture)).Append(" blocks: ")
                .AppendJoin("; ", problems).Append(". Servers: ")
                .AppendJoin(", ", spans.Select(s => s.Blocks == s.Info.Blocks
                    ? string.Create(CultureInfo.InvariantCulture, $"{s.Connection.RemoteAddress} = {s.Blocks}")
                    : string.Create(CultureInfo.InvariantCulture, $"{s.Connection.RemoteAddress} = {s.Blocks} of {s.Info.Blocks}")))
                .Append('.');
            throw new RemoteChainException(message.ToString());
        }
    }

    /// <summary>
    /// Adds what makes one server unusable for this model and codec (another model, hidden size, codec, blocks asked for
    /// that are not within its span) to <paramref name="problems"/>.
    /// </summary>
    private static void AddServerProblems(RemoteSpanConnection span, ModelConfig config, string modelId, WireCodec codec, List<string> problems)
    {
        var info = span.Info;
        var blocks = span.Blocks;
        if (blocks.Start < info.Blocks.Start || blocks.End > info.Blocks.End)
        {
            problems.Add($"{span.Name} is asked for blocks {blocks} but serves only {info.Blocks}");
        }

        if (info.ModelId.Length > 0 && !string.Equals(info.ModelId, modelId, StringComparison.Ordinal))
        {
            problems.Add($"{span.Name} serves model '{info.ModelId}', not '{modelId}'");
        }

        if (info.HiddenSize != config.HiddenSize)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"{span.Name} has hidden size {info.HiddenSize}, the model has {config.HiddenSize}"));
        }

        if ((info.Codecs & (WireCodecs)(1 << (int)codec)) == 0)
        {
            problems.Add($"{span.Name} does not accept hidden states as {codec} (it accepts {info.Codecs})");
        }
    }

    private static async Task CloseStreamsAsync(RemoteSpanConnection[] spans, uint[] streams, int count)
    {
        for (var i = 0; i < count; i++)
        {
            spans[i].ForgetSession(streams[i]);
            try
            {
                using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await spans[i].SendOneWayAsync(streams[i], new InferenceClose(), wait.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TransportException or ProtocolException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                // The server frees the session when the connection drops or the session idles out.
            }
        }
    }

    private void CheckShape(int length, int batchSize, int tokenCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
        var expected = (long)batchSize * tokenCount * Config.HiddenSize;
        if (length != expected)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"Hidden states hold {length} values; expected batch {batchSize} x tokens {tokenCount} x hidden {Config.HiddenSize} = {expected}."),
                nameof(length));
        }
    }

    /// <summary>An inference session: one inference stream per server, steps sent through the chain in order.</summary>
    private sealed class RemoteSession(RemoteTransformerBlocks owner, uint[] streams, int batchSize, int maxLength, int maxTokensPerStep) : ITransformerSession
    {
        private readonly RemoteSpanConnection.PendingCall[] _calls = [.. streams.Select(_ => new RemoteSpanConnection.PendingCall())];
        private ulong _lastStepId;
        private bool _broken;
        private bool _disposed;

        public int BatchSize { get; } = batchSize;

        public int MaxLength { get; } = maxLength;

        public int Position { get; private set; }

        [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
        public async ValueTask ForwardAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken = default)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_broken)
            {
                throw new InvalidOperationException("An earlier step of this session failed, so the servers' caches no longer match it; open a new session.");
            }

            owner.CheckShape(hidden.Length, BatchSize, tokenCount);
            if (Position + tokenCount > MaxLength)
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"The session holds {Position} of at most {MaxLength} positions and cannot take {tokenCount} more."));
            }

            try
            {
                if (tokenCount <= maxTokensPerStep)
                {
                    await StepAsync(hidden, tokenCount, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await StepInChunksAsync(hidden, tokenCount, cancellationToken).ConfigureAwait(false);
                }
            }
            catch
            {
                _broken = true;
                throw;
            }
        }

        /// <summary>
        /// Runs a prefill longer than the servers take in one step as consecutive steps of at most
        /// <c>maxTokensPerStep</c> tokens: each chunk attends to the earlier ones through the servers' caches, so the
        /// outputs equal one big step.
        /// </summary>
        private async ValueTask StepInChunksAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken)
        {
            var width = owner.Config.HiddenSize;
            if (BatchSize == 1)
            {
                for (var start = 0; start < tokenCount; start += maxTokensPerStep)
                {
                    var chunk = Math.Min(maxTokensPerStep, tokenCount - start);
                    await StepAsync(hidden.Slice(start * width, chunk * width), chunk, cancellationToken).ConfigureAwait(false);
                }

                return;
            }

            // Rows of a chunk are not contiguous across the batch: gather them into one buffer and scatter the outputs back.
            var buffer = System.Buffers.ArrayPool<float>.Shared.Rent(BatchSize * maxTokensPerStep * width);
            try
            {
                for (var start = 0; start < tokenCount; start += maxTokensPerStep)
                {
                    var chunk = Math.Min(maxTokensPerStep, tokenCount - start);
                    var part = buffer.AsMemory(0, BatchSize * chunk * width);
                    for (var b = 0; b < BatchSize; b++)
                    {
                        hidden.Span.Slice(((b * tokenCount) + start) * width, chunk * width).CopyTo(part.Span[(b * chunk * width)..]);
                    }

                    await StepAsync(part, chunk, cancellationToken).ConfigureAwait(false);
                    for (var b = 0; b < BatchSize; b++)
                    {
                        part.Span.Slice(b * chunk * width, chunk * width).CopyTo(hidden.Span[(((b * tokenCount) + start) * width)..]);
                    }
                }
            }
            finally
            {
                System.Buffers.ArrayPool<float>.Shared.Return(buffer);
            }
        }

        /// <summary>One step through every server in block order; advances <see cref="Position"/>.</summary>
        [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
        private async ValueTask StepAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken)
        {
            var shape = new TensorShape(BatchSize, tokenCount, owner.Config.HiddenSize);
            var codec = owner._options.Codec;
            {
                for (var i = 0; i < owner._spans.Length; i++)
                {
                    var span = owner._spans[i];
                    var stepId = ++_lastStepId;
                    var call = span.Register(_calls[i], streams[i], hidden);
                    await span.SendAsync(call, new InferenceStep(stepId, Position, WireTensor.FromValues(shape, hidden, codec)), cancellationToken).ConfigureAwait(false);
                    var outcome = await span.WaitAsync(call, cancellationToken).ConfigureAwait(false);
                    if (outcome.StepId != stepId || outcome.Position != Position + tokenCount)
                    {
                        throw new ProtocolException(
                            ProtocolErrorCode.OutOfOrder,
                            string.Create(CultureInfo.InvariantCulture, $"{span.Name} answered step {stepId} as step {outcome.StepId} at position {outcome.Position}; expected position {Position + tokenCount}."));
                    }
                }
            }

            Position += tokenCount;
        }

        public async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            await CloseStreamsAsync(owner._spans, streams, streams.Length).ConfigureAwait(false);
        }
    }
}
