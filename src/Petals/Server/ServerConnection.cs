using System.Buffers;
using System.Globalization;
using Petals.Protocol;

namespace Petals.Server;

/// <summary>
/// The server side of one client connection: answers unary calls, owns the connection's inference sessions, and
/// frees them when the connection ends. Runs on the connection's read loop; compute is queued, never awaited there.
/// </summary>
internal sealed class ServerConnection : IProtocolMessageHandler
{
    private static readonly TimeSpan ErrorSendTimeout = TimeSpan.FromSeconds(5);
    private readonly BlockServer _server;
    private readonly ProtocolConnection _connection;
    private readonly Lock _lock = new();
    private readonly Dictionary<uint, InferenceSession> _sessions = [];
    private readonly HashSet<Task> _forwards = [];
    private bool _closed;
    private long _lastBytes;
    private long _lastActivity;
    private bool _marked;
    private long _markTime;
    private long _markBytes;
    private volatile string? _dropReason;

    public ServerConnection(BlockServer server, ProtocolConnection connection)
    {
        _server = server;
        _connection = connection;
        PeerKey = CachePeerKey.Of(connection.RemoteAddress);
        _lastBytes = connection.BytesReceived;
        _lastActivity = server.Time.GetTimestamp();
    }

    public ProtocolConnection Connection => _connection;

    /// <summary>Who this connection's cache reservations are charged to (<see cref="CachePeerKey"/>).</summary>
    public string PeerKey { get; }

    /// <summary>Why the server closed this connection (idle, too slow), or null when it did not.</summary>
    public string? DropReason => _dropReason;

    /// <summary>
    /// The periodic check of the connection's deadlines at <paramref name="now"/> (a timestamp of the server's clock):
    /// a message in progress must bring <see cref="BlockServerOptions.MinReceiveRate"/> over each
    /// <see cref="BlockServerOptions.MinReceiveRateWindow"/> (the first window is its grace period), and a connection
    /// with no session, no call and no message in progress must receive something within
    /// <see cref="BlockServerOptions.ConnectionIdleTimeout"/>. Over a deadline the connection is told why on stream 0 and
    /// aborted. Called by one sweeper at a time.
    /// </summary>
    public ConnectionVerdict Check(long now)
    {
        if (_dropReason is not null)
        {
            return ConnectionVerdict.None;
        }

        var options = _server.Options;
        var bytes = _connection.BytesReceived;
        if (bytes != _lastBytes)
        {
            _lastBytes = bytes;
            _lastActivity = now;
        }

        var inProgress = _connection.MessageInProgress;
        if (options.MinReceiveRate > 0 && inProgress)
        {
            if (!_marked)
            {
                _marked = true;
                _markTime = now;
                _markBytes = bytes;
            }
            else
            {
                var elapsed = _server.Time.GetElapsedTime(_markTime, now);
                if (elapsed >= options.MinReceiveRateWindow)
                {
                    var received = bytes - _markBytes;
                    if (received < options.MinReceiveRate * elapsed.TotalSeconds)
                    {
                        Drop(new ProtocolException(ProtocolErrorCode.ReceiveTooSlow, string.Create(CultureInfo.InvariantCulture,
                            $"a message in progress brought {received} bytes in the last {elapsed.TotalSeconds:0.###} s, below this server's minimum receive rate of {options.MinReceiveRate} bytes/s")));
                        return ConnectionVerdict.TooSlow;
                    }

                    _markTime = now;
                    _markBytes = bytes;
                }
            }
        }
        else
        {
            _marked = false;
        }

        if (!inProgress && IsIdle && _server.Time.GetElapsedTime(_lastActivity, now) >= options.ConnectionIdleTimeout)
        {
            Drop(new ProtocolException(ProtocolErrorCode.ConnectionIdle, string.Create(CultureInfo.InvariantCulture,
                $"the connection had no session and received nothing for {options.ConnectionIdleTimeout.TotalSeconds:0.###} s")));
            return ConnectionVerdict.Idle;
        }

        return ConnectionVerdict.None;
    }

    /// <summary>Whether the connection has no session and no forward call in progress.</summary>
    private bool IsIdle
    {
        get
        {
            lock (_lock)
            {
                if (_sessions.Count != 0)
                {
                    return false;
                }

                foreach (var forward in _forwards)
                {
                    if (!forward.IsCompleted)
                    {
                        return false;
                    }
                }

                return true;
            }
        }
    }

    private void Drop(ProtocolException error)
    {
        _dropReason = error.Message;
        _ = DropAsync(error);
    }

    private async Task DropAsync(ProtocolException error)
    {
        // Told on stream 0, then closed gracefully (the peer reads the error before the end of the stream; an abort could
        // overtake it). Closing stops the read loop; a peer that does not read is cut off after the close wait.
        await TrySendErrorAsync(0, error).ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
    }

    public ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken ct) => message switch
    {
        InfoRequest => ReplyAsync(streamId, _server.CreateInfo(_connection.VersionMinor), ct),
        PingMessage ping => ReplyAsync(streamId, new PongMessage(ping.Nonce), ct),
        ForwardRequest forward => OnForwardAsync(streamId, forward, ct),
        BackwardRequest backward => OnBackwardAsync(streamId, backward, ct),
        InferenceOpen open => OnOpenAsync(streamId, open, ct),
        InferenceStep step => OnStepAsync(streamId, step, ct),
        InferenceClose => OnClose(streamId),
        ErrorMessage => OnClientError(streamId),
        _ => SendErrorAsync(streamId, new ProtocolException(ProtocolErrorCode.OutOfOrder, $"a block server does not accept {message.Type} messages"), ct),
    };

    public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException error)
    {
        InferenceSession? session;
        lock (_lock)
        {
            _sessions.TryGetValue(streamId, out session);
        }

        session?.Cancel(null, $"the call failed: {error.Message}");
    }

    public ValueTask SendAsync(uint streamId, ProtocolMessage message, CancellationToken cancellationToken) =>
        _connection.SendAsync(streamId, message, cancellationToken);

    /// <summary>Sends an error on a stream, best effort: the connection may be gone already.</summary>
    public async Task TrySendErrorAsync(uint streamId, ProtocolException error)
    {
        using var timeout = new CancellationTokenSource(ErrorSendTimeout);
        try
        {
            await _connection.SendAsync(streamId, ErrorMessage.From(error, _server.Options.Limits), timeout.Token).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Best effort: a dead connection cannot be told anything.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    private ValueTask SendErrorAsync(uint streamId, ProtocolException error, CancellationToken ct) =>
        ReplyAsync(streamId, ErrorMessage.From(error, _server.Options.Limits), ct);

    /// <summary>
    /// An answer sent from the read loop, bounded by the idle timeout: a client that sends requests but never reads
    /// would otherwise hold the read loop (and the connection) in this send until shutdown. On timeout the send is
    /// canceled, which aborts the connection.
    /// </summary>
    private async ValueTask ReplyAsync(uint streamId, ProtocolMessage message, CancellationToken ct)
    {
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
        bounded.CancelAfter(_server.Options.SessionIdleTimeout);
        await _connection.SendAsync(streamId, message, bounded.Token).ConfigureAwait(false);
    }

    /// <summary>
    /// The checks a stateless forward or backward call passes first, in order: the server takes calls, serves the blocks,
    /// speaks the reply codec, and the hidden states are <c>[batch, tokens, hidden]</c> within its limits.
    /// </summary>
    private ProtocolException? CheckStatelessCall(Models.BlockRange blocks, WireCodec replyCodec, WireTensor hidden, out int batch, out int tokens)
    {
        batch = tokens = 0;
        if (_server.RefusalReason is { } refused)
        {
            return new ProtocolException(BlockServerErrors.ShuttingDown, refused);
        }

        if (!_server.Serves(blocks))
        {
            return SpanMismatch(blocks);
        }

        if (!_server.Accepts(replyCodec))
        {
            return BadCodec("reply codec", replyCodec);
        }

        return ValidateHidden(hidden, out batch, out tokens);
    }

    private ValueTask OnForwardAsync(uint streamId, ForwardRequest request, CancellationToken ct)
    {
        if (CheckStatelessCall(request.Blocks, request.ReplyCodec, request.Hidden, out var batch, out var tokens) is { } invalid)
        {
            return SendErrorAsync(streamId, invalid, ct);
        }

        if (BuildAdaptation(request.Blocks, batch, tokens, request.Prompts, request.Lora, request.Adapter, null, out var adaptation) is { } badAdaptation)
        {
            return SendErrorAsync(streamId, badAdaptation, ct);
        }

        var hidden = _server.Config.HiddenSize;
        var bytes = ((long)batch * tokens * hidden * sizeof(float)) + AdaptationBytes(adaptation, request.Lora.HasValue);
        if (!_server.TryReserveInput(bytes))
        {
            return SendErrorAsync(streamId, _server.InputBudgetFull(bytes), ct);
        }

        var buffer = ArrayPool<float>.Shared.Rent(batch * tokens * hidden);
        request.Hidden.CopyTo(buffer);
        if (NonFinite(buffer.AsSpan(0, batch * tokens * hidden), request.Hidden.Shape, "hidden states", null) is { } nonFinite)
        {
            ArrayPool<float>.Shared.Return(buffer);
            _server.ReleaseInput(bytes);
            return SendErrorAsync(streamId, nonFinite, ct);
        }

        Track(RunForwardAsync(streamId, buffer, batch, tokens, request.Blocks, request.ReplyCodec, adaptation, bytes));
        return ValueTask.CompletedTask;
    }

    private ValueTask OnBackwardAsync(uint streamId, BackwardRequest request, CancellationToken ct)
    {
        if (CheckStatelessCall(request.Blocks, request.ReplyCodec, request.Inputs, out var batch, out var tokens) is { } invalid)
        {
            return SendErrorAsync(streamId, invalid, ct);
        }

        if (request.GradOutputs.Shape != request.Inputs.Shape)
        {
            return SendErrorAsync(streamId, new ProtocolException(ProtocolErrorCode.BadShape,
                $"the gradient of the outputs {request.GradOutputs.Shape} does not have the shape of the inputs {request.Inputs.Shape}"), ct);
        }

        if (!_server.Accepts(request.GradOutputs.Codec))
        {
            return SendErrorAsync(streamId, BadCodec("gradient codec", request.GradOutputs.Codec), ct);
        }

        if (BuildAdaptation(request.Blocks, batch, tokens, request.Prompts, request.Lora, request.Adapter, null, out var adaptation) is { } badAdaptation)
        {
            return SendErrorAsync(streamId, badAdaptation, ct);
        }

        var count = batch * tokens * _server.Config.HiddenSize;

        // Charged as the forward charges its input: both tensors and the adaptation wait here until computed.
        var bytes = (2L * count * sizeof(float)) + AdaptationBytes(adaptation, request.Lora.HasValue);
        if (!_server.TryReserveInput(bytes))
        {
            return SendErrorAsync(streamId, _server.InputBudgetFull(bytes), ct);
        }

        var inputs = ArrayPool<float>.Shared.Rent(count);
        var grads = ArrayPool<float>.Shared.Rent(count);
        request.Inputs.CopyTo(inputs);
        request.GradOutputs.CopyTo(grads);
        var nonFinite = NonFinite(inputs.AsSpan(0, count), request.Inputs.Shape, "inputs", null)
            ?? NonFinite(grads.AsSpan(0, count), request.GradOutputs.Shape, "output gradients", null);
        if (nonFinite is not null)
        {
            ArrayPool<float>.Shared.Return(inputs);
            ArrayPool<float>.Shared.Return(grads);
            _server.ReleaseInput(bytes);
            return SendErrorAsync(streamId, nonFinite, ct);
        }

        Track(RunBackwardAsync(streamId, inputs, grads, batch, tokens, request.Blocks, request.ReplyCodec, adaptation, sentLora: request.Lora.HasValue, bytes));
        return ValueTask.CompletedTask;
    }

    private void Track(Task work)
    {
        lock (_lock)
        {
            _forwards.RemoveWhere(static t => t.IsCompleted);
            if (!work.IsCompleted)
            {
                _forwards.Add(work);
            }
        }
    }

    private static long AdaptationBytes(Execution.BlockAdaptation? adaptation, bool sentLora) =>
        adaptation is null ? 0 : ((long)adaptation.Prompts.Length * sizeof(float)) + (sentLora && adaptation.Lora is { } lora ? (long)lora.Values.Length * sizeof(float) : 0);

    /// <summary>
    /// Builds the adaptation of a call or step over <paramref name="blocks"/> from its wire fields, or returns the error:
    /// both an adapter name and sent weights, an unknown adapter, prompts or weights of the wrong shape (<c>bad_shape</c>),
    /// or a NaN or infinity in them (<c>non_finite_input</c>).
    /// </summary>
    /// <remarks>
    /// <c>tokens</c> is the positions of a stateless call (the prompts must fit in them), or null for a session step;
    /// <c>sessionLora</c> the weights a session applies to every step (its adapter or sent weights), or null.
    /// </remarks>
    internal ProtocolException? BuildAdaptation(Models.BlockRange blocks, int batch, int? tokens, WireTensor? prompts, WireLora? lora, string? adapter, ulong? stepId, out Execution.BlockAdaptation? adaptation, Execution.LoraWeights? sessionLora = null)
    {
        adaptation = null;
        if (prompts is null && lora is null && adapter is null && sessionLora is null)
        {
            return null;
        }

        if (adapter is not null && lora is not null)
        {
            return new ProtocolException(ProtocolErrorCode.MalformedFrame, $"the request names adapter '{adapter}' and sends LoRA weights; a call uses one or the other");
        }

        Execution.LoraWeights? weights = sessionLora;
        try
        {
            if (adapter is not null)
            {
                weights = _server.ResolveAdapter(adapter, blocks);
            }
            else if (lora is { } sent)
            {
                weights = sent.ToWeights(_server.Config, blocks);
                if (NonFinite(weights.Values.Span, new TensorShape(weights.Values.Length), "LoRA weights", stepId) is { } badWeights)
                {
                    return badWeights;
                }
            }
        }
        catch (ProtocolException e)
        {
            return e;
        }

        var promptLength = 0;
        float[]? promptValues = null;
        if (prompts is { } p)
        {
            var hidden = _server.Config.HiddenSize;
            var shape = p.Shape;
            if (shape.Rank != 4 || shape[0] != blocks.Count || shape[1] != batch || shape[3] != hidden)
            {
                return new ProtocolException(ProtocolErrorCode.BadShape, string.Create(CultureInfo.InvariantCulture,
                    $"deep prompts {shape} do not fit [blocks {blocks.Count}, batch {batch}, prefix, hidden {hidden}]"));
            }

            if (tokens is { } t && shape[2] > t)
            {
                return new ProtocolException(ProtocolErrorCode.BadShape, string.Create(CultureInfo.InvariantCulture,
                    $"deep prompts {shape} cover {shape[2]} positions but the call has only {t} tokens per sequence"));
            }

            if (!_server.Accepts(p.Codec))
            {
                return BadCodec("prompts codec", p.Codec);
            }

            promptValues = p.ToArray();
            if (NonFinite(promptValues, shape, "prompts", stepId) is { } badPrompts)
            {
                return badPrompts;
            }

            promptLength = shape[2];
        }

        // The executor takes only weights: a named adapter is resolved into its weights here (the name is not passed on).
        adaptation = new Execution.BlockAdaptation
        {
            Lora = weights,
            Prompts = promptValues ?? ReadOnlyMemory<float>.Empty,
            PromptLength = promptLength,
        };
        return null;
    }

    private async Task RunForwardAsync(uint streamId, float[] buffer, int batch, int tokens, Models.BlockRange blocks, WireCodec codec, Execution.BlockAdaptation? adaptation, long bytes)
    {
        var hidden = _server.Config.HiddenSize;
        var count = batch * tokens * hidden;
        try
        {
            var state = (Server: _server, Buffer: buffer, Count: count, Batch: batch, Tokens: tokens, Blocks: blocks, Adaptation: adaptation);
            await _server.Scheduler.RunAsync(
                ComputePriority.Forward,
                static s =>
                {
                    var (server, buffer, count, batch, tokens, blocks, adaptation) = ((BlockServer, float[], int, int, int, Models.BlockRange, Execution.BlockAdaptation?))s!;
                    if (adaptation is null)
                    {
                        server.Executor.Forward(buffer.AsSpan(0, count), batch, tokens, cache: null, blocks);
                    }
                    else
                    {
                        server.Executor.Forward(buffer.AsSpan(0, count), batch, tokens, cache: null, blocks, adaptation);
                    }
                },
                state).ConfigureAwait(false);
            _server.OnComputed(batch * tokens, inference: false);
            var response = new ForwardResponse(WireTensor.FromValues(new TensorShape(batch, tokens, hidden), buffer.AsMemory(0, count), codec));
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await _connection.SendAsync(streamId, response, timeout.Token).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Whatever the executor throws is answered (internal); only a broken send is not.
        catch (Exception ex) when (ex is not (OperationCanceledException or ProtocolException or Transport.TransportException or IOException))
#pragma warning restore CA1031
        {
            await TrySendErrorAsync(streamId, ComputeError(ex, blocks, "forward pass", adaptation is not null)).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // The connection broke while sending: nothing to tell the client.
        catch (Exception ex) when (ex is OperationCanceledException or ProtocolException or Transport.TransportException or IOException)
#pragma warning restore CA1031
        {
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
            _server.ReleaseInput(bytes);
        }
    }

    private async Task RunBackwardAsync(uint streamId, float[] inputs, float[] grads, int batch, int tokens, Models.BlockRange blocks, WireCodec codec, Execution.BlockAdaptation? adaptation, bool sentLora, long bytes)
    {
        var hidden = _server.Config.HiddenSize;
        var count = batch * tokens * hidden;
        try
        {
            Execution.BlockGradients? adaptationGrads = null;
            if (adaptation is not null && (adaptation.HasPrompts || sentLora))
            {
                adaptationGrads = new Execution.BlockGradients
                {
                    Prompts = adaptation.HasPrompts ? new float[adaptation.Prompts.Length] : Memory<float>.Empty,
                    Lora = sentLora ? adaptation.Lora!.CreateZeros() : null,
                };
            }

            var state = (Server: _server, Inputs: inputs, Grads: grads, Count: count, Batch: batch, Tokens: tokens, Blocks: blocks, Adaptation: adaptation, AdaptationGrads: adaptationGrads);
            await _server.Scheduler.RunAsync(
                ComputePriority.Backward,
                static s =>
                {
                    var (server, inputs, grads, count, batch, tokens, blocks, adaptation, adaptationGrads) =
                        ((BlockServer, float[], float[], int, int, int, Models.BlockRange, Execution.BlockAdaptation?, Execution.BlockGradients?))s!;
                    server.Executor.Backward(inputs.AsSpan(0, count), grads.AsSpan(0, count), batch, tokens, blocks, adaptation, adaptationGrads);
                },
                state).ConfigureAwait(false);
            _server.OnBackwardComputed(batch * tokens);
            var response = new BackwardResponse(
                WireTensor.FromValues(new TensorShape(batch, tokens, hidden), grads.AsMemory(0, count), codec),
                adaptationGrads is { Prompts.IsEmpty: false } withPrompts
                    ? WireTensor.FromValues(new TensorShape(blocks.Count, batch, adaptation!.PromptLength, hidden), withPrompts.Prompts, codec)
                    : null,
                adaptationGrads?.Lora is { } loraGrads ? WireTensor.FromValues(new TensorShape(loraGrads.Values.Length), loraGrads.Values, codec) : null);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await _connection.SendAsync(streamId, response, timeout.Token).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Whatever the executor throws is answered (internal); only a broken send is not.
        catch (Exception ex) when (ex is not (OperationCanceledException or ProtocolException or Transport.TransportException or IOException))
#pragma warning restore CA1031
        {
            await TrySendErrorAsync(streamId, ComputeError(ex, blocks, "backward pass", fineTuning: true)).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // The connection broke while sending: nothing to tell the client.
        catch (Exception ex) when (ex is OperationCanceledException or ProtocolException or Transport.TransportException or IOException)
#pragma warning restore CA1031
        {
        }
        finally
        {
            ArrayPool<float>.Shared.Return(inputs);
            ArrayPool<float>.Shared.Return(grads);
            _server.ReleaseInput(bytes);
        }
    }

    /// <summary>
    /// The answer to a pass that threw: <c>unsupported</c> when the executor cannot run a sub-range or a fine-tuning
    /// feature the call used (<paramref name="fineTuning"/>: an adaptation or a backward pass), otherwise <c>internal</c>.
    /// </summary>
    private ProtocolException ComputeError(Exception ex, Models.BlockRange blocks, string what, bool fineTuning) => ex switch
    {
        ObjectDisposedException => ShuttingDown(),
        NotSupportedException when blocks != _server.Blocks => _server.SubRangeUnsupported(blocks, ex),
        NotSupportedException when fineTuning => new ProtocolException(BlockServerErrors.Unsupported, $"this server cannot run the {what}: {ex.Message}"),
        ArgumentException => new ProtocolException(ProtocolErrorCode.BadShape, $"The {what} was refused: {ex.Message}"),
        _ => new ProtocolException(ProtocolErrorCode.Internal, $"The {what} failed: {ex.Message}"),
    };

    private ValueTask OnOpenAsync(uint streamId, InferenceOpen open, CancellationToken ct)
    {
        if (_server.RefusalReason is { } refused)
        {
            return SendErrorAsync(streamId, new ProtocolException(BlockServerErrors.ShuttingDown, refused), ct);
        }

        if (!_server.Serves(open.Blocks))
        {
            return SendErrorAsync(streamId, SpanMismatch(open.Blocks), ct);
        }

        if (open.MaxLength > _server.Options.MaxSessionLength)
        {
            return SendErrorAsync(streamId, new ProtocolException(BlockServerErrors.RequestTooLarge, string.Create(CultureInfo.InvariantCulture,
                $"the session asks for max length {open.MaxLength}, above this server's limit of {_server.Options.MaxSessionLength}")), ct);
        }

        if (!_server.Accepts(open.ReplyCodec))
        {
            return SendErrorAsync(streamId, BadCodec("reply codec", open.ReplyCodec), ct);
        }

        if (BuildAdaptation(open.Blocks, 1, null, null, open.Lora, open.Adapter, null, out var sessionAdaptation) is { } badAdaptation)
        {
            return SendErrorAsync(streamId, badAdaptation, ct);
        }

        var session = new InferenceSession(_server, this, streamId, open, sessionAdaptation?.Lora);
        lock (_lock)
        {
            if (_closed)
            {
                return ValueTask.CompletedTask;
            }

            if (!_sessions.TryAdd(streamId, session))
            {
                return SendErrorAsync(streamId, new ProtocolException(ProtocolErrorCode.OutOfOrder, $"stream {streamId} already carries an open session"), ct);
            }

            // Registered and started under the lock, so that CloseAsync always finds and awaits a running loop.
            _server.OnSessionOpened(session);
            session.Start();
        }

        return ValueTask.CompletedTask;
    }

    private ValueTask OnStepAsync(uint streamId, InferenceStep step, CancellationToken ct)
    {
        InferenceSession? session;
        lock (_lock)
        {
            _sessions.TryGetValue(streamId, out session);
        }

        if (session is null)
        {
            return SendErrorAsync(streamId, new ProtocolException(ProtocolErrorCode.UnknownSession,
                $"stream {streamId} has no open session (it was never opened, or ended by an earlier error or timeout)"), ct);
        }

        StepWork work;
        if (session.QueuedSteps >= InferenceSession.MaxQueuedSteps)
        {
            // A client that pipelines without reading results would make the server hold unbounded inputs.
            work = StepWork.Failed(step.StepId, new ProtocolException(ProtocolErrorCode.Busy, string.Create(CultureInfo.InvariantCulture,
                $"more than {InferenceSession.MaxQueuedSteps} steps of this session are queued; wait for results before sending more")));
        }
        else if (ValidateHidden(step.Hidden, out var batch, out var tokens) is { } invalid)
        {
            work = StepWork.Failed(step.StepId, invalid);
        }
        else if (BuildAdaptation(session.Blocks, batch, null, step.Prompts, null, null, step.StepId, out var stepAdaptation, session.Lora) is { } badAdaptation)
        {
            work = StepWork.Failed(step.StepId, badAdaptation);
        }
        else if (!_server.TryReserveInput((long)batch * tokens * _server.Config.HiddenSize * sizeof(float)))
        {
            work = StepWork.Failed(step.StepId, _server.InputBudgetFull((long)batch * tokens * _server.Config.HiddenSize * sizeof(float)));
        }
        else
        {
            work = StepWork.FromMessage(step, batch, tokens, _server.Config.HiddenSize, _server, stepAdaptation);
            if (NonFinite(work.Inputs, step.Hidden.Shape, "hidden states", step.StepId) is { } nonFinite)
            {
                // Refused before anything runs: the session goes on with its cache as it was (a step refusal keeps the call open).
                work.Dispose();
                work = StepWork.Failed(step.StepId, nonFinite);
            }
        }

        if (!session.Enqueue(work))
        {
            work.Dispose();
        }

        return ValueTask.CompletedTask;
    }

    private ValueTask OnClose(uint streamId) => EndSessionByClient(streamId, "closed by the client");

    /// <summary>
    /// The client abandoned the call on <paramref name="streamId"/> with an error (its connection already closed the
    /// stream): its session, if any, ends. Errors are never answered, since answering errors with errors could loop.
    /// </summary>
    private ValueTask OnClientError(uint streamId) => EndSessionByClient(streamId, "abandoned by the client with an error");

    /// <summary>Ends the session on <paramref name="streamId"/>, if any, letting a result already going out finish.</summary>
    private ValueTask EndSessionByClient(uint streamId, string reason)
    {
        InferenceSession? session;
        lock (_lock)
        {
            _sessions.TryGetValue(streamId, out session);
        }

        session?.Cancel(null, reason, letResultOut: true);
        return ValueTask.CompletedTask;
    }

    /// <summary>Checks a hidden-state tensor against the model and the server's limits.</summary>
    private ProtocolException? ValidateHidden(WireTensor tensor, out int batch, out int tokens)
    {
        batch = tokens = 0;
        var shape = tensor.Shape;
        if (shape.Rank != 3)
        {
            return new ProtocolException(ProtocolErrorCode.BadShape, $"hidden states must be [batch, tokens, hidden], not {shape}");
        }

        if (shape[2] != _server.Config.HiddenSize)
        {
            return new ProtocolException(ProtocolErrorCode.BadShape, string.Create(CultureInfo.InvariantCulture,
                $"hidden states {shape} have hidden size {shape[2]}, the model's is {_server.Config.HiddenSize}"));
        }

        if (!_server.Accepts(tensor.Codec))
        {
            return BadCodec("hidden states codec", tensor.Codec);
        }

        if ((long)shape[0] * shape[1] > _server.Options.MaxBatchTokens)
        {
            return new ProtocolException(BlockServerErrors.RequestTooLarge, string.Create(CultureInfo.InvariantCulture,
                $"hidden states {shape} carry {(long)shape[0] * shape[1]} batch x tokens, above this server's limit of {_server.Options.MaxBatchTokens}"));
        }

        batch = shape[0];
        tokens = shape[1];
        return null;
    }

    /// <summary>
    /// The <c>non_finite_input</c> error for the first NaN or infinity in <paramref name="values"/> (a tensor of
    /// <paramref name="shape"/>), or null when all are finite; counted in the server's statistics.
    /// </summary>
    private ProtocolException? NonFinite(ReadOnlySpan<float> values, TensorShape shape, string what, ulong? stepId)
    {
        var index = Numerics.FiniteValues.IndexOfNonFinite(values);
        if (index < 0)
        {
            return null;
        }

        Span<int> dims = stackalloc int[shape.Rank];
        for (var d = 0; d < dims.Length; d++)
        {
            dims[d] = shape[d];
        }

        _server.OnNonFiniteRefused();
        var where = Numerics.FiniteValues.Describe(values, index, dims);
        return new ProtocolException(ProtocolErrorCode.NonFiniteInput, stepId is { } id
            ? string.Create(CultureInfo.InvariantCulture, $"step {id}: the {what} {shape} hold {where}; the step was not run and the session and its cache are unchanged")
            : string.Create(CultureInfo.InvariantCulture, $"the {what} {shape} hold {where}; nothing was computed"));
    }

    private ProtocolException SpanMismatch(Models.BlockRange requested) => new(ProtocolErrorCode.SpanMismatch,
        $"blocks {requested} requested; this server runs blocks {_server.Blocks} and serves only non-empty ranges within them");

    private static ProtocolException ShuttingDown() =>
        new(BlockServerErrors.ShuttingDown, "the server is shutting down");

    private ProtocolException BadCodec(string what, WireCodec codec) =>
        new(ProtocolErrorCode.BadDType, $"the {what} {codec} is not accepted; this server accepts {_server.Options.Codecs}");

    /// <summary>Called by a session's loop when it has freed everything.</summary>
    public void OnSessionEnded(InferenceSession session)
    {
        lock (_lock)
        {
            if (_sessions.TryGetValue(session.StreamId, out var current) && ReferenceEquals(current, session))
            {
                _sessions.Remove(session.StreamId);
            }
        }
    }

    /// <summary>Ends every session (telling the clients <paramref name="error"/> when given) and waits until all are freed and forwards done.</summary>
    public async Task CloseAsync(ProtocolException? error, string reason)
    {
        InferenceSession[] sessions;
        Task[] forwards;
        lock (_lock)
        {
            _closed = true;
            sessions = [.. _sessions.Values];
            forwards = [.. _forwards];
        }

        foreach (var session in sessions)
        {
            session.Cancel(error, reason);
        }

        foreach (var session in sessions)
        {
            await session.Completion.ConfigureAwait(false);
        }

        await Task.WhenAll(forwards).ConfigureAwait(false);
    }
}
