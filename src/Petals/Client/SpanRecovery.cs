using Petals.Models;
using Petals.Transport;

namespace Petals.Client;

/// <summary>
/// One recovery of a fault-tolerant inference session (<see cref="RemoteTransformerBlocks.SpanRecovered"/>): a server
/// of the chain failed during a step, its blocks were routed again over replacement servers, the replacements were
/// given the inputs the failed server had received (its history) and the step went on.
/// </summary>
public sealed class SpanRecovery
{
    internal SpanRecovery(
        int position,
        BlockRange blocks,
        string failedPeerId,
        PeerAddress failedAddress,
        Exception error,
        IReadOnlyList<RemoteSpanInfo> replacements,
        int replayedTokens,
        int attempt,
        DateTimeOffset detectedAt,
        DateTimeOffset resumedAt,
        TimeSpan detectionToResume)
    {
        Position = position;
        Blocks = blocks;
        FailedPeerId = failedPeerId;
        FailedAddress = failedAddress;
        Error = error;
        Replacements = replacements;
        ReplayedTokens = replayedTokens;
        Attempt = attempt;
        DetectedAt = detectedAt;
        ResumedAt = resumedAt;
        DetectionToResume = detectionToResume;
    }

    /// <summary>The tokens the session held when the failed step started (the step's first position).</summary>
    public int Position { get; }

    /// <summary>The failed server's blocks in the chain, which the replacements now run.</summary>
    public BlockRange Blocks { get; }

    /// <summary>The peer id of the server that failed; it is banned for a while (see <see cref="SwarmSequenceManager.BannedPeers"/>).</summary>
    public string FailedPeerId { get; }

    /// <summary>Where the failed server was reached.</summary>
    public PeerAddress FailedAddress { get; }

    /// <summary>Why the server was considered failed (a lost connection, a timeout, an error it answered, a malformed answer).</summary>
    public Exception Error { get; }

    /// <summary>The servers that took over <see cref="Blocks"/>, in block order, and the blocks each runs.</summary>
    public IReadOnlyList<RemoteSpanInfo> Replacements { get; }

    /// <summary>
    /// The positions the first replacement was given to rebuild its attention cache: the whole history of the span,
    /// the failed step's tokens included.
    /// </summary>
    public int ReplayedTokens { get; }

    /// <summary>Which recovery of the same step this was: 1 for the first, 2 when a replacement failed in turn, …</summary>
    public int Attempt { get; }

    /// <summary>When the session saw the failure.</summary>
    public DateTimeOffset DetectedAt { get; }

    /// <summary>When the replacements had rebuilt their caches and answered the failed step, so the session went on.</summary>
    public DateTimeOffset ResumedAt { get; }

    /// <summary>From <see cref="DetectedAt"/> to <see cref="ResumedAt"/>, on a monotonic clock: routing, connecting, replaying.</summary>
    public TimeSpan DetectionToResume { get; }

    /// <inheritdoc />
    public override string ToString() => string.Create(
        System.Globalization.CultureInfo.InvariantCulture,
        $"blocks {Blocks} of {FailedPeerId} at position {Position} → {string.Join(", ", Replacements)} ({ReplayedTokens} tokens replayed, {DetectionToResume.TotalMilliseconds:0.#} ms): {Error.Message}");
}
