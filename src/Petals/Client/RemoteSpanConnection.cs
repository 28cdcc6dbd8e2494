using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <summary>
/// The client's connection to one server: calls are registered by stream id before they are sent, and the read loop
/// decodes each answer straight into the caller's buffer before completing the call.
/// </summary>
/// <remarks>
/// A session reuses one <see cref="PendingCall"/> per server for all its steps, and deadlines are checked by one timer
/// per connection, so a decode step allocates nothing here.
/// </remarks>
internal sealed class RemoteSpanConnection : IProtocolMessageHandler, IAsyncDisposable
{
    private readonly ProtocolConnection _connection;
    private readonly Dictionary<uint, PendingCall> _pending = [];
    private readonly Dictionary<uint, ErrorMessage?> _sessions = [];
    private readonly Lock _pendingLock = new();
    private readonly TimeSpan _requestTimeout;
    private readonly TimeSpan _livenessTimeout;
    private readonly ITimer _deadlines;
    private readonly Health.LivenessDetector _liveness;
    private volatile Exception? _livenessFailure;
    private readonly Task _run;
    private volatile Exception? _failure;
    private volatile bool _serverClosing;

    private RemoteSpanConnection(ProtocolConnection connection, TimeSpan requestTimeout, TimeSpan livenessTimeout)
    {
        _connection = connection;
        _requestTimeout = requestTimeout;
        _livenessTimeout = livenessTimeout;
        _liveness = new Health.LivenessDetector(livenessTimeout);
        var shortest = Math.Min(requestTimeout.Ticks, livenessTimeout.Ticks);
        var period = TimeSpan.FromTicks(Math.Clamp(shortest / 8, TimeSpan.TicksPerMillisecond * 10, TimeSpan.TicksPerSecond));
        _deadlines = TimeProvider.System.CreateTimer(static s => ((RemoteSpanConnection)s!).CheckCalls(), this, period, period);
        _run = RunAsync();
    }

    /// <summary>
    /// Whether the connection is of no more use: lost, aborted, declared dead by the liveness check, or its server said it
    /// is shutting down (its connections are about to close; a new call must go to a new connection, not race the close).
    /// </summary>
    public bool IsFailed => _failure is not null || _serverClosing;

    /// <summary>How long a call may wait for its answer.</summary>
    public TimeSpan RequestTimeout => _requestTimeout;

    /// <summary>The server's info (set once connected).</summary>
    public InfoResponse Info { get; private set; } = null!;

    public ProtocolConnection Connection => _connection;

    public string Name => string.Create(CultureInfo.InvariantCulture, $"server '{_connection.Remote.PeerId}' at {_connection.RemoteAddress}");

    public static async Task<RemoteSpanConnection> ConnectAsync(ITransport transport, PeerAddress address, ConnectionPreamble local, RemoteSequenceOptions options, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        ProtocolConnection connection;
        try
        {
            connection = await ProtocolConnection.ConnectAsync(transport, address, local, options.Limits, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException(string.Create(CultureInfo.InvariantCulture, $"Connecting to {address} took longer than {options.ConnectTimeout.TotalSeconds:0.#} s."));
        }

        var span = new RemoteSpanConnection(connection, options.RequestTimeout, options.LivenessTimeout);
        try
        {
            var pending = span.Register(new PendingCall(), span._connection.NewStreamId(), default);
            await span.SendAsync(pending, new InfoRequest(), timeout.Token).ConfigureAwait(false);
            span.Info = (InfoResponse)(await span.WaitAsync(pending, timeout.Token).ConfigureAwait(false)).Message!;
            return span;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await span.DisposeAsync().ConfigureAwait(false);
            throw new TimeoutException(string.Create(CultureInfo.InvariantCulture, $"{span.Name} did not answer the info call within {options.ConnectTimeout.TotalSeconds:0.#} s."));
        }
        catch
        {
            await span.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Registers <paramref name="call"/> (fresh, or one whose previous answer was awaited) for an answer on
    /// <paramref name="streamId"/>, decoded into <paramref name="destination"/>; register before sending.
    /// </summary>
    public PendingCall Register(PendingCall call, uint streamId, Memory<float> destination) => Register(call, streamId, destination, default, default);

    /// <summary>
    /// As <see cref="Register(PendingCall, uint, Memory{float})"/> for a backward call: the gradient of the inputs goes to
    /// <paramref name="destination"/>, those of the prompts and LoRA weights (when not empty) to the other two.
    /// </summary>
    public PendingCall Register(PendingCall call, uint streamId, Memory<float> destination, Memory<float> promptGradients, Memory<float> loraGradients)
    {
        call.Arm(streamId, destination, Stopwatch.GetTimestamp() + (long)(_requestTimeout.TotalSeconds * Stopwatch.Frequency));
        call.PromptGradients = promptGradients;
        call.LoraGradients = loraGradients;
        lock (_pendingLock)
        {
            // The server ended the session between steps (idle timeout, shutdown): its reason, not a confusing
            // out_of_order, nor the lost connection that may have followed it.
            if (_sessions.TryGetValue(streamId, out var ended) && ended is not null)
            {
                throw new ProtocolException(ended.Code, $"{Name} ended the session earlier with {ended.Code.Value}: {ended.Message}") { StreamId = streamId, IsRemoteError = true };
            }

            if (_failure is { } failure)
            {
                throw Lost(failure);
            }

            if (!_pending.TryAdd(streamId, call))
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"Stream {streamId} to {Name} already waits for an answer."));
            }
        }

        return call;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendAsync(PendingCall call, ProtocolMessage message, CancellationToken cancellationToken)
    {
        // While sending, the deadline timer aborts the connection if the call gets overdue: a server that stopped
        // reading would otherwise hold this send (and its caller) forever, since the deadline only fails the answer.
        call.IsSending = true;
        try
        {
            await _connection.SendAsync(call.StreamId, message, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Remove(call.StreamId);
            throw;
        }
        finally
        {
            call.IsSending = false;
        }
    }

    /// <summary>
    /// Marks <paramref name="streamId"/> as an inference stream: an error the server sends there while no step waits
    /// (the session ended between steps) is kept and reported by the next <see cref="Register(PendingCall, uint, Memory{float})"/> on it.
    /// </summary>
    public void TrackSession(uint streamId)
    {
        lock (_pendingLock)
        {
            _sessions[streamId] = null;
        }
    }

    /// <summary>Forgets an inference stream (the session is closed).</summary>
    public void ForgetSession(uint streamId)
    {
        lock (_pendingLock)
        {
            _sessions.Remove(streamId);
        }
    }

    /// <summary>Sends a message that expects no answer (an inference open or close).</summary>
    public ValueTask SendOneWayAsync(uint streamId, ProtocolMessage message, CancellationToken cancellationToken) =>
        _connection.SendAsync(streamId, message, cancellationToken);

    /// <summary>Waits for the answer of <paramref name="call"/>, bounded by the request timeout.</summary>
    /// <exception cref="ProtocolException">When the server answered with an error; the message names the server.</exception>
    /// <exception cref="TimeoutException">When no answer came within the request timeout.</exception>
    /// <exception cref="TransportException">When the connection broke.</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<CallOutcome> WaitAsync(PendingCall call, CancellationToken cancellationToken)
    {
        CancellationTokenRegistration registration = default;
        if (cancellationToken.CanBeCanceled)
        {
            registration = cancellationToken.UnsafeRegister(static (s, token) => ((PendingCall)s!).Fail(new OperationCanceledException(token)), call);
        }

        try
        {
            return await call.AsValueTask().ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            Remove(call.StreamId);
            throw;
        }
        finally
        {
            await registration.DisposeAsync().ConfigureAwait(false);
        }
    }

    ValueTask IProtocolMessageHandler.OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken)
    {
        if (message is ErrorMessage { Code: var code } && code == Server.BlockServerErrors.ShuttingDown)
        {
            _serverClosing = true;
        }

        PendingCall? call;
        lock (_pendingLock)
        {
            if (!_pending.Remove(streamId, out call))
            {
                // The answer to a call that timed out or was canceled: nobody waits for it. An error on an idle
                // inference stream ended its session: kept for the next step.
                if (message is ErrorMessage error && _sessions.ContainsKey(streamId) && !CallTracker.IsStepRefusal(error))
                {
                    _sessions[streamId] = error;
                }

                return ValueTask.CompletedTask;
            }
        }

        // Claim the call before writing into its buffer: a call canceled or timed out a moment ago has returned to its
        // caller, whose buffer must not change any more; once claimed, a cancellation no longer wins.
        if (!call.TryClaim())
        {
            return ValueTask.CompletedTask;
        }

        try
        {
            switch (message)
            {
                case ErrorMessage error:
                    call.Fail(new ProtocolException(error.Code, $"{Name} answered {error.Code.Value}: {error.Message}") { StreamId = streamId, IsRemoteError = true }, claimed: true);
                    break;
                case InferenceStepResult result:
                    Decode(call, result.Hidden);
                    call.Complete(new CallOutcome(result.StepId, result.Position, null));
                    break;
                case ForwardResponse response:
                    Decode(call, response.Hidden);
                    call.Complete(new CallOutcome(0, 0, null));
                    break;
                case BackwardResponse backward:
                    Decode(call, backward.GradInputs);
                    DecodeExtra(call, backward.GradPrompts, call.PromptGradients, "prompt gradients");
                    DecodeExtra(call, backward.GradLora, call.LoraGradients, "LoRA gradients");
                    call.Complete(new CallOutcome(0, 0, null));
                    break;
                case InfoResponse or PongMessage:
                    call.Complete(new CallOutcome(0, 0, message));
                    break;
                default:
                    call.Fail(new ProtocolException(ProtocolErrorCode.OutOfOrder, $"{Name} answered stream {streamId} with an unexpected {message.Type}.") { StreamId = streamId }, claimed: true);
                    break;
            }
        }
        catch (ProtocolException e)
        {
            call.Fail(e, claimed: true);
        }

        return ValueTask.CompletedTask;
    }

    void IProtocolMessageHandler.OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure)
    {
        if (Remove(streamId) is { } call)
        {
            call.Fail(new ProtocolException(failure.Code, $"The answer of {Name} on stream {streamId} was malformed: {failure.Message}", failure) { StreamId = streamId });
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _deadlines.DisposeAsync().ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
        await _run.ConfigureAwait(false);
    }

    private PendingCall? Remove(uint streamId)
    {
        lock (_pendingLock)
        {
            return _pending.Remove(streamId, out var call) ? call : null;
        }
    }

    /// <summary>
    /// Runs on the connection's timer: fails calls past their deadline, and checks that a server with calls waiting
    /// still sends something (pinging it after a third of <see cref="RemoteSequenceOptions.LivenessTimeout"/>, aborting
    /// the connection once all of it passed in silence).
    /// </summary>
    private void CheckCalls()
    {
        var now = Stopwatch.GetTimestamp();
        CheckLiveness(now);
        List<PendingCall>? overdue = null;
        lock (_pendingLock)
        {
            foreach (var call in _pending.Values)
            {
                if (call.Deadline < now)
                {
                    (overdue ??= []).Add(call);
                }
            }

            if (overdue is not null)
            {
                foreach (var call in overdue)
                {
                    _pending.Remove(call.StreamId);
                }
            }
        }

        if (overdue is not null)
        {
            if (overdue.Exists(static c => c.IsSending))
            {
                _connection.Abort(string.Create(CultureInfo.InvariantCulture, $"{Name} did not read a request within {_requestTimeout.TotalSeconds:0.#} s"));
            }

            foreach (var call in overdue)
            {
                call.Fail(new TimeoutException(string.Create(CultureInfo.InvariantCulture, $"{Name} did not answer within {_requestTimeout.TotalSeconds:0.#} s (stream {call.StreamId}).")));
            }
        }
    }

    private void CheckLiveness(long now)
    {
        bool waiting;
        var sending = false;
        lock (_pendingLock)
        {
            waiting = _pending.Count > 0 && _failure is null;
            foreach (var call in _pending.Values)
            {
                sending |= call.IsSending;
            }
        }

        switch (_liveness.Observe(now, waiting, sending, _connection.BytesReceived, _connection.BytesSent))
        {
            case Health.LivenessDetector.Verdict.Dead:
                _livenessFailure = new Health.PeerUnresponsiveException(string.Create(CultureInfo.InvariantCulture,
                    $"{Name} neither sent nor read anything for {_liveness.Silence.TotalMilliseconds:0} ms while a call waited for its answer, not even a reply to a ping (liveness timeout {_livenessTimeout.TotalMilliseconds:0} ms); the connection is considered dead."));
                _connection.Abort("the server stopped answering (liveness timeout)");
                break;
            case Health.LivenessDetector.Verdict.Ping:
                _ = PingQuietlyAsync();
                break;
        }
    }

    /// <summary>Sends a ping whose answer only shows the server is alive (any byte received resets the silence).</summary>
    private async Task PingQuietlyAsync()
    {
        try
        {
            using var wait = new CancellationTokenSource(_livenessTimeout);
            await _connection.SendAsync(0, new PingMessage(ulong.MaxValue - (ulong)Stopwatch.GetTimestamp()), wait.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TransportException or ProtocolException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // The liveness check aborts the connection if the server stays silent.
        }
    }

    private void Decode(PendingCall call, WireTensor hidden)
    {
        if (hidden.Shape.ElementCount != call.Destination.Length)
        {
            throw new ProtocolException(
                ProtocolErrorCode.BadShape,
                string.Create(CultureInfo.InvariantCulture, $"{Name} answered stream {call.StreamId} with hidden states {hidden.Shape} ({hidden.Shape.ElementCount} values); {call.Destination.Length} were expected."))
            { StreamId = call.StreamId };
        }

        hidden.CopyTo(call.Destination.Span);
    }

    private void DecodeExtra(PendingCall call, WireTensor? tensor, Memory<float> destination, string what)
    {
        if (destination.IsEmpty)
        {
            // Not wanted by the caller (e.g. prompt gradients of a pass that trains only the input).
            return;
        }

        if (tensor is not { } t || t.Shape.ElementCount != destination.Length)
        {
            throw new ProtocolException(
                ProtocolErrorCode.BadShape,
                string.Create(CultureInfo.InvariantCulture, $"{Name} answered stream {call.StreamId} with {(tensor is null ? "no " + what : $"{what} {tensor.Value.Shape}")}; {destination.Length} values were expected."))
            { StreamId = call.StreamId };
        }

        t.CopyTo(destination.Span);
    }

    private async Task RunAsync()
    {
        Exception failure;
        try
        {
            await _connection.RunAsync(this).ConfigureAwait(false);
            failure = new TransportException(TransportErrorKind.ConnectionReset, $"{Name} closed the connection.");
        }
        catch (Exception e) when (e is TransportException or ProtocolException or OperationCanceledException or ObjectDisposedException)
        {
            failure = e;
        }

        if (_livenessFailure is { } dead)
        {
            failure = dead;
        }

        PendingCall[] orphans;
        lock (_pendingLock)
        {
            _failure = failure;
            orphans = [.. _pending.Values];
            _pending.Clear();
        }

        foreach (var call in orphans)
        {
            call.Fail(Lost(failure));
        }
    }

    private Exception Lost(Exception failure) => failure switch
    {
        Health.PeerUnresponsiveException t => new Health.PeerUnresponsiveException(t.Message, t),
        TimeoutException t => new TimeoutException(t.Message, t),
        ProtocolException p => new ProtocolException(p.Code, $"The connection to {Name} failed: {p.Message}", p) { IsConnectionFatal = true },
        TransportException t => new TransportException(t.Kind, $"The connection to {Name} was lost: {t.Message}", t),
        _ => new TransportException(TransportErrorKind.ConnectionReset, $"The connection to {Name} was closed.", failure),
    };

    /// <summary>What a call's answer carried besides the hidden states written into the caller's buffer.</summary>
    internal readonly record struct CallOutcome(ulong StepId, int Position, ProtocolMessage? Message);

    /// <summary>
    /// A call waiting for its answer: a reusable value-task source (one per session and server, re-armed for every
    /// step). Exactly one of <see cref="Complete"/> and <see cref="Fail"/> takes effect per arming.
    /// </summary>
    internal sealed class PendingCall : IValueTaskSource<CallOutcome>
    {
        private ManualResetValueTaskSourceCore<CallOutcome> _core = new() { RunContinuationsAsynchronously = true };
        private const int Idle = 0;
        private const int Armed = 1;
        private const int Claimed = 2;
        private int _armed;
        private bool _sending;

        public uint StreamId { get; private set; }

        public Memory<float> Destination { get; private set; }

        /// <summary>Where a backward answer's prompt gradients go (empty when none is expected).</summary>
        public Memory<float> PromptGradients { get; set; }

        /// <summary>Where a backward answer's LoRA gradients go (empty when none is expected).</summary>
        public Memory<float> LoraGradients { get; set; }

        public long Deadline { get; private set; }

        /// <summary>Whether the request is being sent (written to the transport) now.</summary>
        public bool IsSending
        {
            get => Volatile.Read(ref _sending);
            set => Volatile.Write(ref _sending, value);
        }

        public void Arm(uint streamId, Memory<float> destination, long deadline)
        {
            if (Volatile.Read(ref _armed) != 0)
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"The call on stream {StreamId} still waits for its answer."));
            }

            _core.Reset();
            StreamId = streamId;
            Destination = destination;
            Deadline = deadline;
            Volatile.Write(ref _armed, Armed);
        }

        public ValueTask<CallOutcome> AsValueTask() => new(this, _core.Version);

        /// <summary>
        /// Takes the call for its answer (armed → claimed): from now on only the answer completes it, and cancellations,
        /// deadlines and connection loss no longer do. False when the call already ended.
        /// </summary>
        public bool TryClaim() => Interlocked.CompareExchange(ref _armed, Claimed, Armed) == Armed;

        /// <summary>Completes the call with its answer; the call must be armed or claimed by the caller of this method.</summary>
        public void Complete(CallOutcome outcome)
        {
            if (Interlocked.Exchange(ref _armed, Idle) != Idle)
            {
                _core.SetResult(outcome);
            }
        }

        /// <summary>
        /// Fails an armed call (cancellation, deadline, connection loss), or a claimed one from the thread that claimed it
        /// (<paramref name="claimed"/>: the answer itself was an error or malformed). A call claimed by another thread is
        /// left to its answer.
        /// </summary>
        public void Fail(Exception failure, bool claimed = false)
        {
            if (Interlocked.CompareExchange(ref _armed, Idle, claimed ? Claimed : Armed) == (claimed ? Claimed : Armed))
            {
                _core.SetException(failure);
            }
        }

        public CallOutcome GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
