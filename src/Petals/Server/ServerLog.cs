using Microsoft.Extensions.Logging;
using Petals.Discovery;
using Petals.Transport;

namespace Petals.Server;

/// <summary>The block server's log messages (stable event ids 3100-3199).</summary>
internal static partial class ServerLog
{
    [LoggerMessage(3100, LogLevel.Information, "Block server for {ModelId} blocks {Blocks} listening on {Address}")]
    public static partial void Listening(ILogger logger, string modelId, string blocks, PeerAddress address);

    [LoggerMessage(3101, LogLevel.Debug, "Handshake with {Remote} failed: {Reason}")]
    public static partial void HandshakeFailed(ILogger logger, PeerAddress remote, string reason);

    [LoggerMessage(3102, LogLevel.Debug, "Connection from {Remote} ended: {Reason}")]
    public static partial void ConnectionEnded(ILogger logger, PeerAddress remote, string reason);

    [LoggerMessage(3103, LogLevel.Debug, "Session {SessionId} on stream {StreamId} opened: blocks {Blocks}, max length {MaxLength}")]
    public static partial void SessionOpened(ILogger logger, Guid sessionId, uint streamId, string blocks, int maxLength);

    [LoggerMessage(3104, LogLevel.Debug, "Session {SessionId} ended after {Steps} steps: {Reason}")]
    public static partial void SessionEnded(ILogger logger, Guid sessionId, long steps, string reason);

    [LoggerMessage(3105, LogLevel.Warning, "Accepting a connection failed")]
    public static partial void AcceptFailed(ILogger logger, Exception exception);

    [LoggerMessage(3106, LogLevel.Error, "Unexpected failure on the connection from {Remote}")]
    public static partial void ConnectionFailed(ILogger logger, PeerAddress remote, Exception exception);

    [LoggerMessage(3107, LogLevel.Information, "Block server stopped")]
    public static partial void Stopped(ILogger logger);

    [LoggerMessage(3110, LogLevel.Information, "Announcing {ModelId} blocks {Blocks}: {Previous} -> {State}")]
    public static partial void StateChanged(ILogger logger, string modelId, string blocks, ServerState previous, ServerState state);

    [LoggerMessage(3111, LogLevel.Debug, "Announced {ModelId} blocks {Blocks} {State}: {CacheTokensLeft} cache tokens left, {NextServers} next-server round trips, expires {ExpiresAt:O}")]
    public static partial void Announced(ILogger logger, string modelId, string blocks, ServerState state, long cacheTokensLeft, int nextServers, DateTimeOffset expiresAt);

    [LoggerMessage(3112, LogLevel.Warning, "Announcing {ModelId} blocks {Blocks} {State} failed; retrying next period")]
    public static partial void AnnouncementFailed(ILogger logger, Exception exception, string modelId, string blocks, ServerState state);

    [LoggerMessage(3113, LogLevel.Warning, "No discovery node accepted the announcement of {ModelId} blocks {Blocks} {State}; retrying next period")]
    public static partial void AnnouncementRejected(ILogger logger, string modelId, string blocks, ServerState state);

    [LoggerMessage(3114, LogLevel.Warning, "The announcement of {ModelId} blocks {Blocks} {State} was accepted for {Accepted} of {Count} blocks")]
    public static partial void AnnouncementPartial(ILogger logger, string modelId, string blocks, ServerState state, int accepted, int count);

    [LoggerMessage(3115, LogLevel.Debug, "Skipped a republication of {ModelId} blocks {Blocks}: the previous announcement is still in progress")]
    public static partial void AnnouncementSkipped(ILogger logger, string modelId, string blocks);

    [LoggerMessage(3116, LogLevel.Information, "Measuring the round trip to next server {PeerId} at {Address} failed (left out): {Reason}")]
    public static partial void PingFailed(ILogger logger, string peerId, Petals.Transport.PeerAddress address, string reason);

    [LoggerMessage(3117, LogLevel.Information, "Blocks {Blocks} announce {Throughput:F1} tokens/s per block ({StepMs:F3} ms per decode step): {Method}")]
    public static partial void ThroughputMeasured(ILogger logger, string blocks, double throughput, double stepMs, string method);

    [LoggerMessage(3170, LogLevel.Warning, "The machine looked busy while measuring throughput ({Rounds} rounds, spread {SpreadPercent:F0}%, load {Load:F1} on {Cores} cores): the figure may be low")]
    public static partial void ThroughputMachineBusy(ILogger logger, int rounds, double spreadPercent, double load, int cores);

    [LoggerMessage(3171, LogLevel.Warning, "Ignoring the throughput cache {Path} ({Reason}); it will be rewritten")]
    public static partial void ThroughputCacheIgnored(ILogger logger, string path, string reason);

    [LoggerMessage(3172, LogLevel.Information, "Using cached throughput {Throughput:F1} tokens/s per block from {Path} (key {Key})")]
    public static partial void ThroughputCached(ILogger logger, double throughput, string path, string key);

    [LoggerMessage(3173, LogLevel.Warning, "Could not write the throughput cache {Path}: {Reason}")]
    public static partial void ThroughputCacheWriteFailed(ILogger logger, string path, string reason);

    [LoggerMessage(3160, LogLevel.Warning, "Refused {Count} connection(s) over the connection limits in the last {Seconds} s (at most one line per interval); latest from {Remote}: {Reason}")]
    public static partial void ConnectionsRefused(ILogger logger, long count, double seconds, PeerAddress remote, string reason);

    [LoggerMessage(3161, LogLevel.Debug, "Closing the connection from {Remote}: {Reason}")]
    public static partial void ConnectionDropped(ILogger logger, PeerAddress remote, string reason);

    [LoggerMessage(3180, LogLevel.Information, "Announcing {ModelId} blocks {Blocks} instead of {Previous} ({State})")]
    public static partial void SpanMoved(ILogger logger, string modelId, string previous, string blocks, ServerState state);
}
