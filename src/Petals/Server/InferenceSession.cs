using System.Globalization;
using System.Threading.Channels;
using Petals.Execution;
using Petals.Protocol;

namespace Petals.Server;

/// <summary>
/// One inference session: its steps run in arrival order on a loop of their own; the cache and its budget
/// reservation belong to the loop and are freed when it ends (close, error, idle timeout, lost connection, shutdown).
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The session's loop disposes its token sources when it ends; the session is never disposed from outside.")]
internal sealed class InferenceSession
{
    private readonly BlockServer _server;
    private readonly ServerConnection _connection;
    private readonly Channel<StepWork> _queue = Channel.CreateUnbounded<StepWork>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _cts = new();
    private readonly CancellationTokenSource _send;
    private readonly HashSet<ulong> _applied = [];
    private IKvCache? _cache;
    private CacheReservation? _reservation;
    private StepWork? _last;
    private ProtocolException? _endError;
    private string _endReason = "closed by the client";
    private long _lastActivity;
    private int _busy;
    private long _steps;

    public InferenceSession(BlockServer server, ServerConnection connection, uint streamId, InferenceOpen open, LoraWeights? lora = null)
    {
        Lora = lora;
        _server = server;
        _connection = connection;
        StreamId = streamId;
        Id = open.SessionId;
        MaxLength = open.MaxLength;
        Blocks = open.Blocks;
        ReplyCodec = open.ReplyCodec;
        _send = new CancellationTokenSource();
        Touch();
    }

    /// <summary>The most steps of one session queued or running at once; more is answered with <c>busy</c>.</summary>
    public const int MaxQueuedSteps = 64;

    public uint StreamId { get; }

    /// <summary>Steps queued or running.</summary>
    public int QueuedSteps => Volatile.Read(ref _busy);

    public Guid Id { get; }

    public int MaxLength { get; }

    /// <summary>The blocks the session runs: the server's span or a non-empty range within it.</summary>
    public Models.BlockRange Blocks { get; }

    public WireCodec ReplyCodec { get; }

    /// <summary>The LoRA weights every step applies (the named adapter's or those sent at open), or null.</summary>
    public LoraWeights? Lora { get; }

    /// <summary>The loop; completes when the session has ended and freed everything.</summary>
    public Task Completion { get; private set; } = Task.CompletedTask;

    public void Start() => Completion = Task.Run(RunAsync);

    public void Touch() => Volatile.Write(ref _lastActivity, _server.Time.GetTimestamp());

    /// <summary>Whether nothing is queued or running and nothing arrived for <paramref name="timeout"/>.</summary>
    public bool IsIdle(TimeSpan timeout) =>
        Volatile.Read(ref _busy) == 0 && _server.Time.GetElapsedTime(Volatile.Read(ref _lastActivity)) >= timeout;

    /// <summary>Queues a step (its tensors already copied); false when the session has ended.</summary>
    public bool Enqueue(StepWork work)
    {
        Interlocked.Increment(ref _busy);
        Touch();
        if (_queue.Writer.TryWrite(work))
        {
            return true;
        }

        Interlocked.Decrement(ref _busy);
        return false;
    }

    /// <summary>Ends the session after the step in progress; <paramref name="error"/>, when given, is sent to the client.</summary>
    /// <param name="error">The error to send on the stream, or null.</param>
    /// <param name="reason">Why, for the log.</param>
    /// <param name="letResultOut">
    /// Whether a result already going out finishes (bounded by the idle timeout) instead of being cut off: a client's
    /// close must not tear the frame, which would abort the connection and every other session on it.
    /// </param>
    public void Cancel(ProtocolException? error, string reason, bool letResultOut = false)
    {
        if (_queue.Writer.TryComplete())
        {
            Volatile.Write(ref _endError, error);
            _endReason = reason;
        }

        try
        {
            _cts.Cancel();
            if (!letResultOut)
            {
                _send.Cancel();
            }
        }
        catch (ObjectDisposedException)
        {
            // The loop already ended.
        }
    }

    private async Task RunAsync()
    {
        var token = _cts.Token;
        try
        {
            await foreach (var work in _queue.Reader.ReadAllAsync(token).ConfigureAwait(false))
            {
                try
                {
                    if (work.Error is { } invalid)
                    {
                        if (invalid.Code == ProtocolErrorCode.NonFiniteInput)
                        {
                            // A step refusal: answered in order with the other steps, and the session goes on.
                            await _connection.TrySendErrorAsync(StreamId, invalid).ConfigureAwait(false);
                            continue;
                        }

                        throw invalid;
                    }

                    await ProcessAsync(work, token).ConfigureAwait(false);
                }
                catch (ProtocolException ex) when (!token.IsCancellationRequested)
                {
                    _endReason = ex.Message;
                    _queue.Writer.TryComplete();
                    await _connection.TrySendErrorAsync(StreamId, ex).ConfigureAwait(false);
                    break;
                }
#pragma warning disable CA1031 // Whatever the executor throws is answered (internal); a broken send or a shutdown is not.
                catch (Exception ex) when (ex is not (OperationCanceledException or Transport.TransportException or IOException or ObjectDisposedException) && !token.IsCancellationRequested)
#pragma warning restore CA1031
                {
                    // The executor refused the step (shape, cache overflow): a precise message, not a crash.
                    _endReason = ex.Message;
                    _queue.Writer.TryComplete();
                    var error = ex switch
                    {
                        NotSupportedException when Blocks != _server.Blocks => _server.SubRangeUnsupported(Blocks, ex),
                        NotSupportedException when work.Adaptation is not null => new ProtocolException(BlockServerErrors.Unsupported, $"this server cannot run the step: {ex.Message}"),
                        _ => new ProtocolException(ProtocolErrorCode.Internal, $"The step failed: {ex.Message}"),
                    };
                    await _connection.TrySendErrorAsync(StreamId, error).ConfigureAwait(false);
                    break;
                }
                finally
                {
                    if (!ReferenceEquals(work, _last))
                    {
                        work.Dispose();
                    }

                    Interlocked.Decrement(ref _busy);
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Cancelled: closed, timed out, connection lost or shutting down.
        }
        catch (OperationCanceledException) when (_send.IsCancellationRequested)
        {
            // The client did not read a result for the idle timeout; the send aborted the connection.
            _endReason = string.Create(CultureInfo.InvariantCulture,
                $"the client read no step result for {_server.Options.SessionIdleTimeout.TotalSeconds:0.###} s; the connection was aborted");
        }
#pragma warning disable CA1031 // A session's failure (a send on a broken connection) ends only that session.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            if (!token.IsCancellationRequested)
            {
                _endReason = ex.Message;
            }
        }
        finally
        {
            if (Volatile.Read(ref _endError) is { } error)
            {
                await _connection.TrySendErrorAsync(StreamId, error).ConfigureAwait(false);
            }

            while (_queue.Reader.TryRead(out var left))
            {
                left.Dispose();
                Interlocked.Decrement(ref _busy);
            }

            _last?.Dispose();
            _last = null;
            _cache?.Dispose();
            _cache = null;
            _reservation?.Dispose();
            _reservation = null;
            _send.Dispose();
            _cts.Dispose();
            _connection.OnSessionEnded(this);
            _server.OnSessionEnded(this, _steps, _endReason);
        }
    }

    private async Task ProcessAsync(StepWork work, CancellationToken cancellationToken)
    {
        if (_applied.Contains(work.StepId))
        {
            if (_last is { } last && last.StepId == work.StepId)
            {
                await SendResultAsync(last).ConfigureAwait(false);
                return;
            }

            throw new ProtocolException(ProtocolErrorCode.DuplicateStep, string.Create(CultureInfo.InvariantCulture,
                $"step {work.StepId} was already applied and is not the last step ({(_last is null ? "none" : _last.StepId.ToString(CultureInfo.InvariantCulture))}); it is not applied again"));
        }

        if (_cache is null)
        {
            _reservation = await _server.Budget.ReserveAsync(_server.CacheTokensFor(work.Batch, MaxLength, Blocks), _connection.PeerKey, _server.Options.CacheWaitTimeout, cancellationToken).ConfigureAwait(false);
            _cache = _server.Executor.CreateCache(work.Batch, MaxLength, Blocks);
        }
        else if (work.Batch != _cache.BatchSize)
        {
            throw new ProtocolException(ProtocolErrorCode.BadShape, string.Create(CultureInfo.InvariantCulture,
                $"step {work.StepId} has batch {work.Batch}, the session's cache holds {_cache.BatchSize} rows"));
        }

        if (work.StartPosition > _cache.Length)
        {
            throw new ProtocolException(ProtocolErrorCode.BadPosition, string.Create(CultureInfo.InvariantCulture,
                $"step {work.StepId} starts at position {work.StartPosition} but the session cache holds {_cache.Length} tokens"));
        }

        if ((long)work.StartPosition + work.Tokens > MaxLength)
        {
            throw new ProtocolException(ProtocolErrorCode.BadPosition, string.Create(CultureInfo.InvariantCulture,
                $"step {work.StepId} would fill positions {work.StartPosition}..{work.StartPosition + work.Tokens - 1}, past the session's max length {MaxLength}"));
        }

        if (work.HypoIds is { } hypo)
        {
            if (hypo.Length != work.Batch)
            {
                throw new ProtocolException(ProtocolErrorCode.BadHypoIds, string.Create(CultureInfo.InvariantCulture,
                    $"step {work.StepId} carries {hypo.Length} hypo ids for a batch of {work.Batch}"));
            }

            for (var i = 0; i < hypo.Length; i++)
            {
                if ((uint)hypo[i] >= (uint)work.Batch)
                {
                    throw new ProtocolException(ProtocolErrorCode.BadHypoIds, string.Create(CultureInfo.InvariantCulture,
                        $"step {work.StepId}: hypo id {hypo[i]} at index {i} is outside the batch [0, {work.Batch})"));
                }
            }
        }

        work.Cache = _cache;
        work.Executor = _server.Executor;
        work.Blocks = Blocks;
        await _server.Scheduler.RunAsync(ComputePriority.Inference, static s => ((StepWork)s!).Execute(), work, cancellationToken).ConfigureAwait(false);
        work.Position = _cache.Length;
        _applied.Add(work.StepId);
        _last?.Dispose();
        _last = work;

        // Kept only to re-send a repeated step: no longer waiting for computation, so off the queued-input budget
        // (otherwise sessions whose last step was a long prefill would hold it and be refused their next step).
        work.ReleaseInputBudget();
        _steps++;
        _server.OnComputed(work.Batch * work.Tokens, inference: true);
        Touch();
        await SendResultAsync(work).ConfigureAwait(false);
    }

    /// <summary>
    /// Sends a step's result, bounded by the idle timeout: a client that does not read would otherwise hold the
    /// session, its cache and its budget forever (a busy session is never idle). On timeout the connection is aborted.
    /// </summary>
    private async ValueTask SendResultAsync(StepWork work)
    {
        _send.CancelAfter(_server.Options.SessionIdleTimeout);
        await _connection.SendAsync(StreamId, work.ToResult(ReplyCodec), _send.Token).ConfigureAwait(false);
        _send.CancelAfter(Timeout.InfiniteTimeSpan);
    }
}
