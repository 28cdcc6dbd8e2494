using System.Buffers;
using System.Globalization;
using Petals.Execution;
using Petals.Health;
using Petals.Models;
using Petals.Protocol;
using Petals.Routing;

namespace Petals.Client;

/// <summary>
/// The spot checks of a remote sequence (<see cref="VerificationOptions"/>, <c>docs/verification.md</c>): draws which
/// span answers to check, recomputes them (trusted local blocks first, else a stateless forward over a route of other
/// servers), compares them with the answers and, on a disagreement, asks a third opinion, bans whoever is proven wrong
/// and reports the mismatch (<see cref="RemoteTransformerBlocks.VerificationFailed"/>, a log warning).
/// </summary>
/// <remarks>
/// Checks run inline, before the checked span's output reaches the next span or the caller: a step whose check
/// fails is redone on a replacement, so a detected lie never becomes a token. Thread-safe: sessions of one sequence
/// check concurrently.
/// </remarks>
internal sealed class OutputVerifier(RemoteTransformerBlocks owner, ChainRepair repair)
{
    private const string Local = "local";
    private readonly VerificationOptions _options = owner.Options.Verification;
    private readonly Lock _randomLock = new();
    private long _checks;
    private long _skipped;
    private long _mismatches;
    private long _blockPositions;
    private long _largestPassedErrorBits;

    /// <summary>The counters so far.</summary>
    public VerificationStatistics Statistics => new(
        Interlocked.Read(ref _checks),
        Interlocked.Read(ref _skipped),
        Interlocked.Read(ref _mismatches),
        Interlocked.Read(ref _blockPositions),
        BitConverter.Int64BitsToDouble(Interlocked.Read(ref _largestPassedErrorBits)));

    /// <summary>Draws whether the span answer just received is checked.</summary>
    public bool ShouldCheck()
    {
        var rate = _options.Rate;
        if (rate <= 0)
        {
            return false;
        }

        if (rate >= 1)
        {
            return true;
        }

        if (_options.Random is { } random)
        {
            lock (_randomLock)
            {
                return random.NextDouble() < rate;
            }
        }

        return Random.Shared.NextDouble() < rate;
    }

    /// <summary>
    /// Checks the answer of <paramref name="suspect"/> for positions <paramref name="from"/>..<paramref name="to"/> − 1:
    /// recomputes its blocks over <paramref name="inputs"/> (<c>[batch, to, width]</c>, the span's whole input history)
    /// and compares positions from <paramref name="from"/> on with <paramref name="claimed"/> (<c>[batch, to − from, width]</c>).
    /// </summary>
    /// <returns>
    /// Null when the answer agrees or could not be checked (no other server has the blocks, or the verifiers failed);
    /// otherwise the mismatch, already reported. Verifiers proven wrong are banned here; the checked server is for the
    /// caller to report and replace (unless the verdict is <see cref="OutputVerdict.VerifierWrong"/>).
    /// </returns>
    public async Task<OutputMismatch?> CheckAsync(ChainLink suspect, int batch, float[] inputs, int to, float[] claimed, int from, CancellationToken cancellationToken)
    {
        var width = owner.Config.HiddenSize;
        var suspectBound = Bound(suspect.Connection.Info.StatedError);
        var exclude = new HashSet<string>(owner.Sequence.Health.GetBannedPeers(), StringComparer.Ordinal) { suspect.PeerId };
        using var first = await OpinionAsync(suspect.Blocks, exclude, batch, inputs, to, allowLocal: true, cancellationToken).ConfigureAwait(false);
        if (first is null)
        {
            Interlocked.Increment(ref _skipped);
            ClientLog.CheckSkipped(owner.Sequence.Logger, suspect.PeerId, suspect.Blocks.ToString(), from);
            return null;
        }

        Interlocked.Increment(ref _checks);
        var tolerance = Tolerance(suspectBound, first);
        var error = RelativeError(claimed, first.Outputs, batch, to, from, width);
        if (error <= tolerance)
        {
            RecordPassed(error);
            return null;
        }

        Interlocked.Increment(ref _mismatches);
        OutputVerdict verdict;
        IReadOnlyList<string> banned;
        if (first.IsLocal)
        {
            verdict = OutputVerdict.ServerWrong;
            banned = [suspect.PeerId];
        }
        else
        {
            exclude.UnionWith(first.Peers);
            using var third = await OpinionAsync(suspect.Blocks, exclude, batch, inputs, to, allowLocal: false, cancellationToken).ConfigureAwait(false);
            var thirdWithServer = third is not null && RelativeError(claimed, third.Outputs, batch, to, from, width) <= Tolerance(suspectBound, third);
            var thirdWithVerifier = third is not null && RelativeError(first.Outputs, third.Outputs, batch, to, 0, width) <= Tolerance(first.Bound, third);
            (verdict, banned) = (thirdWithVerifier, thirdWithServer) switch
            {
                (true, false) => (OutputVerdict.ServerWrong, (IReadOnlyList<string>)[suspect.PeerId]),
                (false, true) => (OutputVerdict.VerifierWrong, first.Peers),
                _ => (OutputVerdict.Unresolved, [suspect.PeerId, .. first.Peers]),
            };

            if (verdict != OutputVerdict.ServerWrong)
            {
                // The session reports the checked server (it replaces it); the verifiers are reported here.
                var kind = verdict == OutputVerdict.VerifierWrong ? PeerFailureKind.WrongOutput : PeerFailureKind.OutputDisputed;
                foreach (var peer in first.Peers)
                {
                    owner.Sequence.Health.ReportFailure(peer, kind);
                }
            }
        }

        var mismatch = new OutputMismatch(
            suspect.PeerId,
            suspect.Connection.Connection.RemoteAddress,
            suspect.Blocks,
            from,
            to - from,
            error,
            tolerance,
            first.IsLocal ? [Local] : first.Peers,
            verdict,
            banned);
        ClientLog.OutputMismatch(owner.Sequence.Logger, suspect.PeerId, suspect.Connection.Connection.RemoteAddress.ToString(), suspect.Blocks.ToString(), from, error, tolerance, verdict.ToString(), string.Join(", ", mismatch.Verifiers));
        owner.OnVerificationFailed(mismatch);
        return mismatch;
    }

    /// <summary>
    /// The largest relative L2 error of a row between <paramref name="claimed"/> (<c>[batch, to − from, width]</c>) and
    /// positions <paramref name="from"/>.. of <paramref name="reference"/> (<c>[batch, to, width]</c>), both fp32;
    /// infinity when a row of either is not finite. A row's error is <c>‖a − b‖ / max(‖a‖, ‖b‖)</c> (0 for two zero rows).
    /// </summary>
    internal static double RelativeError(ReadOnlySpan<float> claimed, ReadOnlySpan<float> reference, int batch, int to, int from, int width)
    {
        var count = to - from;
        var worst = 0.0;
        for (var b = 0; b < batch; b++)
        {
            for (var p = 0; p < count; p++)
            {
                var a = claimed.Slice(((b * count) + p) * width, width);
                var r = reference.Slice(((b * to) + from + p) * width, width);
                double diff = 0, na = 0, nr = 0;
                for (var k = 0; k < width; k++)
                {
                    double x = a[k], y = r[k];
                    diff += (x - y) * (x - y);
                    na += x * x;
                    nr += y * y;
                }

                if (!double.IsFinite(diff) || !double.IsFinite(na) || !double.IsFinite(nr))
                {
                    return double.PositiveInfinity;
                }

                var scale = Math.Sqrt(Math.Max(na, nr));
                var row = scale == 0 ? 0 : Math.Sqrt(diff) / scale;
                worst = Math.Max(worst, row);
            }
        }

        return worst;
    }

    private double Bound(float? stated) => Math.Min(stated ?? _options.AssumedServerError, _options.MaxTolerance);

    /// <summary>
    /// The tolerance between an answer with error bound <paramref name="bound"/> and <paramref name="opinion"/>: the sum of
    /// both bounds (each is against the exact result, so the two can differ by both), plus the wire codec's rounding of
    /// every tensor that crossed it (the answer and each hop of the opinion), at most <see cref="VerificationOptions.MaxTolerance"/>.
    /// </summary>
    private double Tolerance(double bound, Opinion opinion)
    {
        var roundoff = owner.Options.Codec switch
        {
            WireCodec.Fp16 => 1.0 / 2048,
            WireCodec.Bf16 => 1.0 / 256,

            // Per element at most absmax/254 per block of 64, so per row at most sqrt(64)/254 of the row's norm.
            WireCodec.Int8Blockwise => 8.0 / 254,
            _ => 0.0,
        };
        return Math.Min(_options.MaxTolerance, bound + opinion.Bound + (2 * roundoff * (opinion.Hops + 1)));
    }

    private void RecordPassed(double error)
    {
        var bits = BitConverter.DoubleToInt64Bits(error);
        var seen = Interlocked.Read(ref _largestPassedErrorBits);
        while (error > BitConverter.Int64BitsToDouble(seen))
        {
            var before = Interlocked.CompareExchange(ref _largestPassedErrorBits, bits, seen);
            if (before == seen)
            {
                return;
            }

            seen = before;
        }
    }

    /// <summary>
    /// Recomputes <paramref name="blocks"/> over <paramref name="inputs"/>: on the local executor when allowed and it
    /// covers them, else over a route of servers not in <paramref name="exclude"/>; null when none is available or the
    /// route failed (its servers are reported to the health policy like any failure).
    /// </summary>
    private async Task<Opinion?> OpinionAsync(BlockRange blocks, HashSet<string> exclude, int batch, float[] inputs, int to, bool allowLocal, CancellationToken cancellationToken)
    {
        var width = owner.Config.HiddenSize;
        var length = batch * to * width;
        if (allowLocal && _options.LocalExecutor is { } local && local.Blocks.Start <= blocks.Start && blocks.End <= local.Blocks.End)
        {
            var buffer = ArrayPool<float>.Shared.Rent(length);
            try
            {
                inputs.AsSpan(0, length).CopyTo(buffer);
                local.Forward(buffer.AsSpan(0, length), batch, to, null, blocks);
                Interlocked.Add(ref _blockPositions, (long)batch * to * blocks.Count);
                return new Opinion(buffer, NumericErrorBound.Of(local).RelativeError, [], 0, IsLocal: true);
            }
            catch (NotSupportedException)
            {
                // The executor runs only its whole span; servers check instead.
                ArrayPool<float>.Shared.Return(buffer);
            }
        }

        IReadOnlyList<RouteSegment> route;
        try
        {
            route = owner.Sequence.RouteForward(exclude, blocks, owner.Options.RequiredQuantization);
        }
        catch (RemoteChainException)
        {
            return null;
        }

        var (links, failures) = await repair.ConnectAsync(route, cancellationToken).ConfigureAwait(false);
        if (links is null)
        {
            foreach (var (segment, _, kind) in failures)
            {
                owner.Sequence.Health.ReportFailure(segment.Server.PeerId, kind);
            }

            return null;
        }

        var outputs = ArrayPool<float>.Shared.Rent(length);
        inputs.AsSpan(0, length).CopyTo(outputs);
        var shape = new TensorShape(batch, to, width);
        var codec = owner.Options.Codec;
        var bound = 0.0;
        foreach (var link in links)
        {
            if ((long)batch * to > link.Connection.Info.MaxBatchSize)
            {
                // The server would refuse a pass this long (request_too_large); that is no fault of its own.
                ArrayPool<float>.Shared.Return(outputs);
                return null;
            }

            try
            {
                var memory = outputs.AsMemory(0, length);
                var call = link.Connection.Register(new RemoteSpanConnection.PendingCall(), link.Connection.Connection.NewStreamId(), memory);
                await link.Connection.SendAsync(call, new ForwardRequest(link.Blocks, codec, WireTensor.FromValues(shape, memory, codec)), cancellationToken).ConfigureAwait(false);
                await link.Connection.WaitAsync(call, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (PeerFailureClassifier.Classify(e, cancellationToken) is { } kind)
            {
                ArrayPool<float>.Shared.Return(outputs);
                owner.Sequence.Health.ReportFailure(link.PeerId, kind);
                owner.Pool.Retire(link.Connection, e);
                return null;
            }
            catch
            {
                ArrayPool<float>.Shared.Return(outputs);
                throw;
            }

            bound += Bound(link.Connection.Info.StatedError);
            Interlocked.Add(ref _blockPositions, (long)batch * to * link.Blocks.Count);
        }

        return new Opinion(outputs, bound, [.. links.Select(l => l.PeerId)], links.Count, IsLocal: false);
    }

    /// <summary>A recomputation: its outputs (<c>[batch, to, width]</c>, pooled), its error bound, who computed it and over how many wire hops.</summary>
    private sealed record Opinion(float[] Outputs, double Bound, IReadOnlyList<string> Peers, int Hops, bool IsLocal) : IDisposable
    {
        public void Dispose() => ArrayPool<float>.Shared.Return(Outputs);
    }
}
