using System.Buffers;
using System.Globalization;
using Petals.Execution;
using Petals.Health;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;

namespace Petals.Client;

/// <summary>The fine-tuning members: adapted sessions, the stateless training forward pass and the backward pass.</summary>
public sealed partial class RemoteTransformerBlocks
{
    /// <inheritdoc />
    /// <remarks>
    /// As <see cref="OpenSessionAsync(int, int, CancellationToken)"/>, with the adaptation: every server of the chain
    /// gets its blocks' deep prompts with the steps that cover positions below <see cref="BlockAdaptation.PromptLength"/>
    /// (and with the inputs replayed to a replacement), and the sent LoRA weights or the adapter name when the session
    /// opens there. A session that names an adapter is routed only to servers that hold it
    /// (<see cref="Discovery.ServerInfo.Adapters"/>). Spot checks (<see cref="RemoteSequenceOptions.Verification"/>) do not
    /// run on adapted sessions, whose outputs the local verifier cannot recompute.
    /// </remarks>
    /// <exception cref="RemoteChainException">No server chain holds the named adapter; the message names it.</exception>
    public async ValueTask<ITransformerSession> OpenSessionAsync(int batchSize, int maxLength, BlockAdaptation? adaptation, CancellationToken cancellationToken = default)
    {
        if (adaptation is null || adaptation.IsEmpty)
        {
            return await OpenSessionAsync(batchSize, maxLength, cancellationToken).ConfigureAwait(false);
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        adaptation.Validate(Config, AllBlocks, batchSize, tokenCount: null);
        var links = await _repair.RouteAsync(AllBlocks, batchSize, maxLength, forward: false, new RecoveryAttempts(), cancellationToken, adaptation.Adapter).ConfigureAwait(false);
        return RemoteSession.Open(this, _repair, links, batchSize, maxLength, adaptation);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Each call is routed on its own by throughput (<see cref="SwarmSequenceManager.RouteForward"/>; only servers that
    /// hold a named adapter). Each segment's input is saved with the server's peer id as its runner. A batch larger than
    /// a server takes (<see cref="InfoResponse.MaxBatchSize"/>, its <c>MaxBatchTokens</c>) is sent to it in chunks of whole
    /// sequences. A server that fails is reported and its blocks routed again and retried from their saved input, up to
    /// <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/> times.
    /// </remarks>
    public async ValueTask<ForwardActivations> ForwardAsync(Memory<float> hidden, int batchSize, int tokenCount, BlockAdaptation? adaptation, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        CheckShape(hidden, batchSize, tokenCount);
        adaptation = adaptation is null || adaptation.IsEmpty ? null : adaptation;
        adaptation?.Validate(Config, AllBlocks, batchSize, tokenCount);
        var activations = new ForwardActivations(Config, batchSize, tokenCount, adaptation);
        try
        {
            var segments = await ForwardRangeAsync(AllBlocks, hidden, batchSize, tokenCount, adaptation, new RecoveryAttempts(), cancellationToken).ConfigureAwait(false);
            foreach (var (link, input) in segments)
            {
                activations.Add(link.Blocks, input.AsSpan(0, hidden.Length), link.PeerId);
                ArrayPool<float>.Shared.Return(input);
            }
        }
        catch
        {
            activations.Dispose();
            throw;
        }

        return activations;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Segments run backward in reverse order, each on the server that ran it forward (its runner), from its saved
    /// input. When that server fails (or is gone), it is reported, its blocks are routed again, the forward pass is run
    /// again over the replacement route from the segment's saved input to get the inputs of the new sub-segments, and
    /// those run backward; bounded by <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/> per call. Gradients travel
    /// as <see cref="RemoteSequenceOptions.GradientCodec"/> (fp32 by default).
    /// </remarks>
    public async ValueTask BackwardAsync(ForwardActivations activations, Memory<float> gradients, BlockGradients? adaptationGradients, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ArgumentNullException.ThrowIfNull(activations);
        if (activations.Segments.Count == 0 || activations.Blocks != AllBlocks)
        {
            throw new ArgumentException($"The activations cover blocks {activations.Blocks}; a backward pass needs the forward pass of all {Config.NumLayers} blocks.", nameof(activations));
        }

        CheckGradients(gradients, activations.BatchSize, activations.TokenCount);
        adaptationGradients?.Validate(activations.Adaptation);
        var attempts = new RecoveryAttempts();
        for (var i = activations.Segments.Count - 1; i >= 0; i--)
        {
            var segment = activations.Segments[i];
            ChainLink? link = null;
            if (segment.Runner is { } runner && _sequence.OnlineServers.FirstOrDefault(s => string.Equals(s.PeerId, runner, StringComparison.Ordinal)) is { } server)
            {
                try
                {
                    link = new ChainLink(await _pool.AcquireAsync(server, segment.Blocks, cancellationToken).ConfigureAwait(false), segment.Blocks, runner);
                }
                catch (Exception e) when (PeerFailureClassifier.Classify(e, cancellationToken, connecting: true) is { } kind)
                {
                    _sequence.Health.ReportFailure(runner, kind);
                    Gone(segment.Blocks, runner, e.Message, attempts);
                }
            }
            else
            {
                Gone(segment.Blocks, segment.Runner ?? "(unknown)", "it is no longer online", attempts);
            }

            await BackwardSegmentAsync(segment.Blocks, segment.Input, gradients, link, activations, adaptationGradients, attempts, cancellationToken).ConfigureAwait(false);
        }
    }

    private BlockRange AllBlocks => new(0, Config.NumLayers);

    /// <summary>Records that the server that ran <paramref name="blocks"/> forward cannot run them backward, counting it as a failure of the call.</summary>
    private void Gone(BlockRange blocks, string runner, string why, RecoveryAttempts attempts)
    {
        attempts.Add(runner, string.Create(CultureInfo.InvariantCulture, $"server {PeerIds.Short(runner)} (blocks {blocks}) cannot run them backward: {why}"));
        if (attempts.Count > _options.MaxRecoveryAttempts)
        {
            throw new RemoteChainException(attempts.Describe(
                string.Create(CultureInfo.InvariantCulture, $"Gave up on model {_sequence.ModelId} after {attempts.Count} server failures in one backward pass (MaxRecoveryAttempts is {_options.MaxRecoveryAttempts}).")));
        }
    }

    private void CheckGradients(Memory<float> gradients, int batchSize, int tokenCount)
    {
        var expected = (long)batchSize * tokenCount * Config.HiddenSize;
        if (gradients.Length != expected)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"The gradients hold {gradients.Length} values; the pass's outputs [batch {batchSize}, tokens {tokenCount}, hidden {Config.HiddenSize}] hold {expected}."),
                nameof(gradients));
        }

        var bad = Numerics.FiniteValues.IndexOfNonFinite(gradients.Span);
        if (bad >= 0)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"The gradients hold {Numerics.FiniteValues.Describe(gradients.Span, bad, [batchSize, tokenCount, Config.HiddenSize])}; servers refuse non-finite gradients, so nothing was sent."),
                nameof(gradients));
        }
    }

    /// <summary>
    /// Runs <paramref name="hidden"/> through <paramref name="blocks"/> on a route drawn by throughput, rerouting around
    /// servers that fail, and returns each segment run with a copy of its input.
    /// </summary>
    /// <remarks>The inputs are rented from <see cref="ArrayPool{T}.Shared"/> (their first <c>hidden.Length</c> values); the caller returns them.</remarks>
    private async Task<List<(ChainLink Link, float[] Input)>> ForwardRangeAsync(
        BlockRange blocks, Memory<float> hidden, int batch, int tokens, BlockAdaptation? adaptation, RecoveryAttempts attempts, CancellationToken cancellationToken)
    {
        var links = await _repair.RouteAsync(blocks, batch, 0, forward: true, attempts, cancellationToken, adaptation?.Adapter).ConfigureAwait(false);
        var done = new List<(ChainLink, float[])>();
        for (var i = 0; i < links.Count;)
        {
            var link = links[i];
            var input = ArrayPool<float>.Shared.Rent(hidden.Length);
            hidden.Span.CopyTo(input);
            try
            {
                await CallForwardAsync(link, hidden, batch, tokens, adaptation?.ForBlocks(AllBlocks, link.Blocks), cancellationToken).ConfigureAwait(false);
                _sequence.Health.ReportSuccess(link.PeerId);
                done.Add((link, input));
                i++;
            }
            catch (Exception e) when (PeerFailureClassifier.Classify(e, cancellationToken) is { } kind)
            {
                _repair.Failed(link, e, kind, attempts);
                input.AsSpan(0, hidden.Length).CopyTo(hidden.Span);
                ArrayPool<float>.Shared.Return(input);
                var replacements = await _repair.RouteAsync(link.Blocks, batch, 0, forward: true, attempts, cancellationToken, adaptation?.Adapter).ConfigureAwait(false);
                links = [.. links.Take(i), .. replacements, .. links.Skip(i + 1)];
            }
        }

        return done;
    }

    /// <summary>
    /// The backward pass of one segment on <paramref name="link"/> (or, when it is null or fails, on a new route over its
    /// blocks whose sub-inputs are recomputed forward from <paramref name="input"/>); <paramref name="gradients"/> holds
    /// dLoss/dOutputs of the segment on entry and dLoss/dInputs on return.
    /// </summary>
    private async Task BackwardSegmentAsync(
        BlockRange blocks, ReadOnlyMemory<float> input, Memory<float> gradients, ChainLink? link, ForwardActivations activations,
        BlockGradients? adaptationGradients, RecoveryAttempts attempts, CancellationToken cancellationToken)
    {
        var adaptation = activations.Adaptation;
        var (batch, tokens) = (activations.BatchSize, activations.TokenCount);
        if (link is { } l)
        {
            // The output gradients, put back when the server fails (a failed call may have written part of them).
            var saved = ArrayPool<float>.Shared.Rent(gradients.Length);
            gradients.Span.CopyTo(saved);
            try
            {
                await CallBackwardAsync(l, input, gradients, batch, tokens, adaptation?.ForBlocks(AllBlocks, blocks), adaptationGradients?.ForBlocks(AllBlocks, blocks), cancellationToken).ConfigureAwait(false);
                _sequence.Health.ReportSuccess(l.PeerId);
                return;
            }
            catch (Exception e) when (PeerFailureClassifier.Classify(e, cancellationToken) is { } kind)
            {
                _repair.Failed(l, e, kind, attempts);
                saved.AsSpan(0, gradients.Length).CopyTo(gradients.Span);
            }
            finally
            {
                ArrayPool<float>.Shared.Return(saved);
            }
        }

        // Recompute the sub-inputs of a replacement route from the segment's input, then run its parts backward.
        var hidden = input.ToArray();
        var parts = await ForwardRangeAsync(blocks, hidden, batch, tokens, adaptation, attempts, cancellationToken).ConfigureAwait(false);
        try
        {
            for (var p = parts.Count - 1; p >= 0; p--)
            {
                await BackwardSegmentAsync(parts[p].Link.Blocks, parts[p].Input.AsMemory(0, hidden.Length), gradients, parts[p].Link, activations, adaptationGradients, attempts, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            foreach (var (_, partInput) in parts)
            {
                ArrayPool<float>.Shared.Return(partInput);
            }
        }
    }

    /// <summary>How many whole sequences one call to <paramref name="link"/>'s server may carry (its batch × tokens limit).</summary>
    /// <remarks>
    /// When one sequence alone is longer than the server takes, a training call (<paramref name="refuseTooLong"/>) is
    /// refused here, since the caller's shape and not the server is at fault; the plain stateless forward sends the call
    /// whole and lets the server answer <c>request_too_large</c>, as it always did.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">One sequence is too long for the server and <paramref name="refuseTooLong"/> is set.</exception>
    private static int RowsPerCall(ChainLink link, int batch, int tokens, bool refuseTooLong)
    {
        var limit = link.Connection.Info.MaxBatchSize;
        if (tokens > limit && !refuseTooLong)
        {
            return batch;
        }

        if (tokens > limit)
        {
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, string.Create(CultureInfo.InvariantCulture,
                $"{link.Connection.Name} takes at most {limit} batch x tokens per call (its MaxBatchTokens), less than one sequence of {tokens} tokens; use shorter sequences."));
        }

        return Math.Min(limit / tokens, batch);
    }

    private static void CheckFineTuning(ChainLink link, bool needed)
    {
        if (needed && link.Connection.Connection.VersionMinor < ConnectionPreamble.FineTuningVersionMinor)
        {
            throw new RemoteChainException(string.Create(CultureInfo.InvariantCulture,
                $"{link.Connection.Name} speaks protocol 1.{link.Connection.Connection.VersionMinor}; deep prompts, LoRA adapters and backward passes need 1.{ConnectionPreamble.FineTuningVersionMinor}."));
        }
    }

    /// <summary>The deep prompts of rows <paramref name="row"/>..+<paramref name="rows"/> of a span's prompts (a view for the whole batch, else a copy).</summary>
    private static ReadOnlyMemory<float> PromptRows(BlockAdaptation adaptation, int blockCount, int batch, int row, int rows, int hidden)
    {
        if (rows == batch)
        {
            return adaptation.Prompts;
        }

        var perRow = adaptation.PromptLength * hidden;
        var result = new float[blockCount * rows * perRow];
        for (var b = 0; b < blockCount; b++)
        {
            adaptation.Prompts.Span.Slice(((b * batch) + row) * perRow, rows * perRow).CopyTo(result.AsSpan(b * rows * perRow));
        }

        return result;
    }

    private WireTensor? PromptTensor(BlockAdaptation? adaptation, BlockRange blocks, int batch, int row, int rows) =>
        adaptation is { HasPrompts: true }
            ? WireTensor.FromValues(new TensorShape(blocks.Count, rows, adaptation.PromptLength, Config.HiddenSize), PromptRows(adaptation, blocks.Count, batch, row, rows, Config.HiddenSize))
            : null;

    private async Task CallForwardAsync(ChainLink link, Memory<float> hidden, int batch, int tokens, BlockAdaptation? adaptation, CancellationToken cancellationToken, bool training = true)
    {
        CheckFineTuning(link, adaptation is not null);
        var rows = RowsPerCall(link, batch, tokens, refuseTooLong: training);
        var width = tokens * Config.HiddenSize;
        var lora = adaptation?.Lora is { } weights ? WireLora.From(weights) : (WireLora?)null;
        for (var row = 0; row < batch; row += rows)
        {
            var n = Math.Min(rows, batch - row);
            var part = hidden.Slice(row * width, n * width);
            var request = new ForwardRequest(link.Blocks, _options.Codec, WireTensor.FromValues(new TensorShape(n, tokens, Config.HiddenSize), part, _options.Codec), PromptTensor(adaptation, link.Blocks, batch, row, n))
            {
                Lora = lora,
                Adapter = adaptation?.Adapter,
            };
            var call = link.Connection.Register(new RemoteSpanConnection.PendingCall(), link.Connection.Connection.NewStreamId(), part);
            await link.Connection.SendAsync(call, request, cancellationToken).ConfigureAwait(false);
            await link.Connection.WaitAsync(call, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task CallBackwardAsync(
        ChainLink link, ReadOnlyMemory<float> input, Memory<float> gradients, int batch, int tokens, BlockAdaptation? adaptation, BlockGradients? adaptationGradients, CancellationToken cancellationToken)
    {
        CheckFineTuning(link, needed: true);
        var rows = RowsPerCall(link, batch, tokens, refuseTooLong: true);
        var hidden = Config.HiddenSize;
        var width = tokens * hidden;
        var codec = _options.GradientCodec;
        var lora = adaptation?.Lora is { } weights ? WireLora.From(weights) : (WireLora?)null;
        var promptGrads = adaptation is { HasPrompts: true } && adaptationGradients is { Prompts.IsEmpty: false } ? adaptationGradients.Prompts : Memory<float>.Empty;
        var loraGrads = adaptation?.Adapter is null && adaptation?.Lora is not null && adaptationGradients?.Lora is { } lg ? lg.Values : Memory<float>.Empty;
        var chunked = rows < batch;
        var perRow = adaptation is { HasPrompts: true } ? adaptation.PromptLength * hidden : 0;
        var promptPart = chunked && !promptGrads.IsEmpty ? new float[link.Blocks.Count * rows * perRow] : null;
        var loraPart = chunked && !loraGrads.IsEmpty ? new float[loraGrads.Length] : null;
        for (var row = 0; row < batch; row += rows)
        {
            var n = Math.Min(rows, batch - row);
            var grads = gradients.Slice(row * width, n * width);
            var request = new BackwardRequest(
                link.Blocks,
                codec,
                WireTensor.FromValues(new TensorShape(n, tokens, hidden), input.Slice(row * width, n * width), _options.Codec),
                WireTensor.FromValues(new TensorShape(n, tokens, hidden), grads, codec),
                PromptTensor(adaptation, link.Blocks, batch, row, n))
            {
                Lora = lora,
                Adapter = adaptation?.Adapter,
            };
            var promptDestination = promptGrads.IsEmpty ? Memory<float>.Empty : promptPart is null ? promptGrads : promptPart.AsMemory(0, link.Blocks.Count * n * perRow);
            var loraDestination = loraGrads.IsEmpty ? Memory<float>.Empty : loraPart ?? loraGrads;
            var call = link.Connection.Register(new RemoteSpanConnection.PendingCall(), link.Connection.Connection.NewStreamId(), grads, promptDestination, loraDestination);
            await link.Connection.SendAsync(call, request, cancellationToken).ConfigureAwait(false);
            await link.Connection.WaitAsync(call, cancellationToken).ConfigureAwait(false);
            if (promptPart is not null)
            {
                for (var b = 0; b < link.Blocks.Count; b++)
                {
                    promptPart.AsSpan(b * n * perRow, n * perRow).CopyTo(promptGrads.Span.Slice(((b * batch) + row) * perRow, n * perRow));
                }
            }

            if (loraPart is not null)
            {
                // Each chunk's gradient is the sum over its sequences: the whole batch's is the sum over chunks.
                if (row == 0)
                {
                    loraPart.CopyTo(loraGrads);
                }
                else
                {
                    System.Numerics.Tensors.TensorPrimitives.Add(loraGrads.Span, loraPart, loraGrads.Span);
                }
            }
        }
    }
}
