using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Petals.Health;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;

namespace Petals.Client;

/// <summary>
/// An inference session over a remote sequence, fault-tolerant by Algorithm 1 of the Petals paper: for every span of
/// its chain it keeps the inputs sent there (<see cref="SpanHistory"/>). When a span's server fails during a step, the
/// session reports it, routes exactly that span's blocks again (possibly over several servers), and runs the
/// replacements from position 0 over the kept inputs, in steps as large as each server takes, before the step goes on
/// through the rest of the chain. With <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/> 0 the first failure
/// ends the step with the server's own error instead.
/// </summary>
/// <remarks>
/// The outputs of a replaced span for earlier positions only fill the history of the next span when that span is new
/// too; a span that kept its server keeps the inputs it had. One caller at a time; a failed step breaks the session.
/// </remarks>
internal sealed class RemoteSession : ITransformerSession
{
    private readonly RemoteTransformerBlocks _owner;
    private readonly ChainRepair _repair;
    private readonly Guid _sessionId = Guid.NewGuid();
    private readonly List<SpanState> _chain = [];
    private readonly List<PendingRecovery> _pending = [];
    private readonly int _width;
    private Execution.BlockAdaptation? _adaptation;
    private ulong _lastStepId;
    private bool _broken;
    private bool _disposed;

    private RemoteSession(RemoteTransformerBlocks owner, ChainRepair repair, int batchSize, int maxLength)
    {
        _owner = owner;
        _repair = repair;
        _width = owner.Config.HiddenSize;
        BatchSize = batchSize;
        MaxLength = maxLength;
    }

    public int BatchSize { get; }

    public int MaxLength { get; }

    public int Position { get; private set; }

    /// <summary>The chain this session runs on now, in block order (tests and diagnostics).</summary>
    internal IReadOnlyList<RemoteSpanInfo> CurrentSpans => [.. _chain.Select(s => s.Link.Describe())];

    /// <summary>The most positions of input history any span of this session has room for (never more than <see cref="MaxLength"/>).</summary>
    internal int MaxHistoryPositions => _chain.Count == 0 ? 0 : _chain.Max(s => s.History.Capacity);

    /// <summary>Opens a session on the chain <paramref name="links"/>; checks that every server takes its batch and length.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A server takes less than one token per sequence of the batch, or shorter sessions.</exception>
    public static RemoteSession Open(RemoteTransformerBlocks owner, ChainRepair repair, IReadOnlyList<ChainLink> links, int batchSize, int maxLength, Execution.BlockAdaptation? adaptation = null)
    {
        var session = new RemoteSession(owner, repair, batchSize, maxLength) { _adaptation = adaptation is null || adaptation.IsEmpty ? null : adaptation };
        foreach (var link in links)
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
            throw new InvalidOperationException("An earlier step of this session failed and could not be recovered, so the servers' caches no longer match it; open a new session.");
        }

        _owner.CheckShape(hidden, BatchSize, tokenCount);
        if (Position + tokenCount > MaxLength)
        {
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"The session holds {Position} of at most {MaxLength} positions and cannot take {tokenCount} more."));
        }

        // Nothing was sent yet: a call canceled before it starts leaves the session as it was.
        cancellationToken.ThrowIfCancellationRequested();

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

    /// <summary>
    /// Rolls back to <paramref name="length"/> positions: every span's kept inputs and the positions its server is known to
    /// hold are cut there, so the next step starts at <paramref name="length"/> (the servers truncate their caches when a
    /// step starts below their length) and a later recovery replays only what is kept.
    /// </summary>
    public void Truncate(int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_broken)
        {
            throw new InvalidOperationException("An earlier step of this session failed and could not be recovered; open a new session.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Position);
        foreach (var state in _chain)
        {
            if (state.History.Positions > length)
            {
                state.History.Truncate(length);
            }

            state.CachedPositions = Math.Min(state.CachedPositions, length);
        }

        Position = length;
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
            state.History.Dispose();
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

        return new SpanState(link, tokens, new SpanHistory(BatchSize, _width, MaxLength, _owner.HistoryBuffers));
    }

    /// <summary>One step through every span in block order, replacing the servers that fail; advances <see cref="Position"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask StepAsync(Memory<float> hidden, int tokenCount, CancellationToken cancellationToken)
    {
        var from = Position;
        var to = Position + tokenCount;
        _chain[0].History.Append(hidden.Span, tokenCount, 0, from, tokenCount);
        RecoveryAttempts? attempts = null;
        for (var i = 0; i < _chain.Count;)
        {
            var state = _chain[i];
            try
            {
                var next = i + 1 < _chain.Count ? _chain[i + 1] : null;
                await RunSpanAsync(state, next, hidden, from, to, cancellationToken).ConfigureAwait(false);
                if (_adaptation is null && _owner.Verifier.ShouldCheck())
                {
                    await VerifyAsync(state, next, hidden, from, to, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (PeerFailureClassifier.Classify(e, cancellationToken) is { } kind)
            {
                attempts ??= new RecoveryAttempts();
                i = await ReplaceAsync(i, e, kind, from, to, attempts, cancellationToken).ConfigureAwait(false);
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
    /// Spot-checks the answer <paramref name="state"/>'s server just gave for positions <paramref name="from"/>..<paramref name="to"/> − 1
    /// (in the next span's history, or for the last span in the caller's buffer) against a recomputation of its blocks
    /// over its whole input history, before the next span runs. When the server is found wrong (or disputed), the
    /// positions it gave the next span are taken back and <see cref="OutputVerificationException"/> thrown, so the step
    /// replaces the server exactly as for a failure.
    /// </summary>
    private async ValueTask VerifyAsync(SpanState state, SpanState? next, Memory<float> hidden, int from, int to, CancellationToken cancellationToken)
    {
        var count = to - from;
        var inputs = ArrayPool<float>.Shared.Rent(BatchSize * to * _width);
        var claimed = ArrayPool<float>.Shared.Rent(BatchSize * count * _width);
        OutputMismatch? mismatch;
        try
        {
            state.History.Read(0, to, inputs);
            if (next is not null)
            {
                next.History.Read(from, count, claimed);
            }
            else
            {
                hidden.Span.CopyTo(claimed);
            }

            mismatch = await _owner.Verifier.CheckAsync(state.Link, BatchSize, inputs, to, claimed, from, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(inputs);
            ArrayPool<float>.Shared.Return(claimed);
        }

        if (mismatch is { Verdict: not OutputVerdict.VerifierWrong })
        {
            next?.History.Truncate(from);
            throw new OutputVerificationException(mismatch);
        }
    }

    /// <summary>
    /// Runs positions from the span's cache length (its server's; 0 for a replacement) up to <paramref name="to"/>
    /// through its server, in steps of at most what the server takes, appending the outputs to the next span's history
    /// or, for the last span, writing the step's positions into the caller's buffer.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RunSpanAsync(SpanState state, SpanState? next, Memory<float> hidden, int stepFrom, int to, CancellationToken cancellationToken)
    {
        var connection = state.Link.Connection;
        var codec = _owner.Options.Codec;
        if (!state.Opened)
        {
            state.Stream = connection.Connection.NewStreamId();
            connection.TrackSession(state.Stream);
            state.Opened = true;
            var open = new InferenceOpen(_sessionId, state.Link.Blocks, MaxLength, codec);
            if (_adaptation is { } adaptation)
            {
                if (connection.Connection.VersionMinor < ConnectionPreamble.FineTuningVersionMinor)
                {
                    throw new RemoteChainException(string.Create(CultureInfo.InvariantCulture,
                        $"{connection.Name} speaks protocol 1.{connection.Connection.VersionMinor}; sessions with deep prompts or adapters need 1.{ConnectionPreamble.FineTuningVersionMinor}."));
                }

                var span = adaptation.ForBlocks(new BlockRange(0, _owner.Config.NumLayers), state.Link.Blocks);
                open = open with { Adapter = span.Adapter, Lora = span.Lora is { } lora ? WireLora.From(lora) : null };
            }

            await connection.SendOneWayAsync(state.Stream, open, cancellationToken).ConfigureAwait(false);
        }

        if (BatchSize == 1)
        {
            await RunSpanDirectAsync(state, next, hidden, stepFrom, to, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await RunSpanBatchedAsync(state, next, hidden, stepFrom, to, cancellationToken).ConfigureAwait(false);
        }

        if (!state.Succeeded)
        {
            state.Succeeded = true;
            _repair.Sequence.Health.ReportSuccess(state.Link.PeerId);
        }
    }

    /// <summary>
    /// A batch of one: consecutive positions are contiguous in a history, so each step is sent straight from the span's
    /// history and its answer decoded straight into the next span's history (or, for the last span, the caller's buffer
    /// when the step covers exactly the caller's positions): one copy in and one out, as without a history.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RunSpanDirectAsync(SpanState state, SpanState? next, Memory<float> hidden, int stepFrom, int to, CancellationToken cancellationToken)
    {
        for (var start = state.CachedPositions; start < to;)
        {
            var count = Math.Min(state.MaxTokensPerStep, to - start);
            Memory<float> output;
            float[]? scratch = null;
            if (next is not null && next.History.Positions == start)
            {
                output = next.History.Slot(start, count);
            }
            else if (next is null && start == stepFrom && count == to - stepFrom)
            {
                output = hidden;
            }
            else
            {
                // A replay's positions that the next span holds already, or part of the caller's: decode aside, copy what is new.
                scratch = ArrayPool<float>.Shared.Rent(count * _width);
                output = scratch.AsMemory(0, count * _width);
            }

            try
            {
                await StepSpanAsync(state, state.History.View(start, count), output, start, count, cancellationToken).ConfigureAwait(false);
                if (scratch is null)
                {
                    next?.History.Commit(start + count);
                }
                else
                {
                    DeliverOutputs(output.Span, next, hidden, stepFrom, to, start, count);
                }
            }
            finally
            {
                if (scratch is not null)
                {
                    ArrayPool<float>.Shared.Return(scratch);
                }
            }

            start += count;
        }
    }

    /// <summary>A batch of several: each step's positions are gathered from the history's rows into one buffer, and the answer scattered back.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RunSpanBatchedAsync(SpanState state, SpanState? next, Memory<float> hidden, int stepFrom, int to, CancellationToken cancellationToken)
    {
        var longest = Math.Min(state.MaxTokensPerStep, to - state.CachedPositions);
        var scratch = ArrayPool<float>.Shared.Rent(BatchSize * longest * _width);
        try
        {
            for (var start = state.CachedPositions; start < to;)
            {
                var count = Math.Min(state.MaxTokensPerStep, to - start);
                var part = scratch.AsMemory(0, BatchSize * count * _width);
                state.History.Read(start, count, part.Span);
                await StepSpanAsync(state, part, part, start, count, cancellationToken).ConfigureAwait(false);
                DeliverOutputs(part.Span, next, hidden, stepFrom, to, start, count);
                start += count;
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>Sends positions <paramref name="start"/>.. of the span's inputs as one step and waits for its answer, decoded into <paramref name="output"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask StepSpanAsync(SpanState state, ReadOnlyMemory<float> input, Memory<float> output, int start, int count, CancellationToken cancellationToken)
    {
        var connection = state.Link.Connection;
        var stepId = ++_lastStepId;
        var call = connection.Register(state.Call, state.Stream, output);
        WireTensor? prompts = null;
        if (_adaptation is { HasPrompts: true } adaptation && start < adaptation.PromptLength)
        {
            // The whole prefix's prompts of the span's blocks: the server adds those of the step's positions below it.
            var span = adaptation.ForBlocks(new BlockRange(0, _owner.Config.NumLayers), state.Link.Blocks);
            prompts = WireTensor.FromValues(new TensorShape(state.Link.Blocks.Count, BatchSize, adaptation.PromptLength, _width), span.Prompts);
        }

        await connection.SendAsync(call, new InferenceStep(stepId, start, WireTensor.FromValues(new TensorShape(BatchSize, count, _width), input, _owner.Options.Codec), prompts), cancellationToken).ConfigureAwait(false);
        var outcome = await connection.WaitAsync(call, cancellationToken).ConfigureAwait(false);
        if (outcome.StepId != stepId || outcome.Position != start + count)
        {
            throw new ProtocolException(
                ProtocolErrorCode.OutOfOrder,
                string.Create(CultureInfo.InvariantCulture, $"{connection.Name} answered step {stepId} as step {outcome.StepId} at position {outcome.Position}; expected position {start + count}."));
        }

        state.CachedPositions = start + count;
    }

    /// <summary>
    /// Puts a step's outputs (<c>[batch, count, width]</c> for positions <paramref name="start"/>..) where they go: the
    /// positions the next span does not hold yet into its history, or, for the last span, the step's positions into the
    /// caller's buffer (<c>[batch, to − stepFrom, width]</c>).
    /// </summary>
    private void DeliverOutputs(ReadOnlySpan<float> outputs, SpanState? next, Memory<float> hidden, int stepFrom, int to, int start, int count)
    {
        if (next is not null)
        {
            next.History.Append(outputs, count, 0, start, count);
            return;
        }

        var write = Math.Max(start, stepFrom);
        if (write < start + count)
        {
            SpanHistory.Copy(outputs, count, write - start, hidden.Span, to - stepFrom, write - stepFrom, start + count - write, BatchSize, _width);
        }
    }

    /// <summary>Replaces the failed span <paramref name="index"/> by servers routed for its blocks; the first takes over its history.</summary>
    private async ValueTask<int> ReplaceAsync(int index, Exception error, Petals.Routing.PeerFailureKind kind, int stepFrom, int to, RecoveryAttempts attempts, CancellationToken cancellationToken)
    {
        var detected = Stopwatch.GetTimestamp();
        var detectedAt = DateTimeOffset.UtcNow;
        var failed = _chain[index];
        _ = CloseAsync(failed);
        _repair.Failed(failed.Link, error, kind, attempts);
        var attempt = attempts.Count;
        while (true)
        {
            var links = await _repair.RouteAsync(failed.Link.Blocks, BatchSize, MaxLength, forward: false, attempts, cancellationToken, _adaptation?.Adapter).ConfigureAwait(false);
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
                    _repair.Failed(link, unusable, Petals.Routing.PeerFailureKind.Mismatch, attempts);
                    break;
                }
            }

            if (states.Count < links.Count)
            {
                continue;
            }

            var before = _chain.Select(s => s.Link).ToArray();
            states[0].History.TakeFrom(failed.History);
            _chain.RemoveAt(index);
            _chain.InsertRange(index, states);
            var resume = ChainRepair.JoinNeighbors(_chain, index, states.Count, CanJoin, Join, Retire);
            _owner.FollowChain(before, [.. _chain.Select(s => s.Link)]);
            _pending.Add(new PendingRecovery(stepFrom, failed.Link, error, [.. links.Select(l => l.Describe())], to, attempt, detected, detectedAt));
            return resume;
        }
    }

    /// <summary>A segment a join left behind: its stream closed, its history (if it still has one) back to the pool.</summary>
    private static void Retire(SpanState state)
    {
        _ = CloseAsync(state);
        state.History.Dispose();
    }

    private static bool CanJoin(SpanState first, SpanState second) =>
        ReferenceEquals(first.Link.Connection, second.Link.Connection) && first.Link.Blocks.End == second.Link.Blocks.Start;

    /// <summary>One segment over both blocks on their server, replayed from position 0 over the earlier one's history, like any replacement.</summary>
    private SpanState Join(SpanState first, SpanState second)
    {
        var joined = NewState(first.Link with { Blocks = new BlockRange(first.Link.Blocks.Start, second.Link.Blocks.End) }, forCaller: false);
        joined.History.TakeFrom(first.History);
        return joined;
    }

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
        catch (Exception e) when (e is Transport.TransportException or ProtocolException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // The server frees the session when the connection drops or the session idles out.
        }
    }

    /// <summary>One span of the session's chain: its server, stream, cache length and input history.</summary>
    private sealed class SpanState(ChainLink link, int maxTokensPerStep, SpanHistory history)
    {
        public ChainLink Link { get; } = link;

        public int MaxTokensPerStep { get; } = maxTokensPerStep;

        public SpanHistory History { get; } = history;

        public RemoteSpanConnection.PendingCall Call { get; } = new();

        public uint Stream { get; set; }

        public bool Opened { get; set; }

        public bool Succeeded { get; set; }

        /// <summary>Positions the server's cache holds for this session.</summary>
        public int CachedPositions { get; set; }
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
