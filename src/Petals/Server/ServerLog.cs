using Microsoft.Extensions.Logging;
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

    [LoggerMessage(3103, LogLevel.Debug, "Session {SessionId} on stream {StreamId} opened: max length {MaxLength}")]
    public static partial void SessionOpened(ILogger logger, Guid sessionId, uint streamId, int maxLength);

    [LoggerMessage(3104, LogLevel.Debug, "Session {SessionId} ended after {Steps} steps: {Reason}")]
    public static partial void SessionEnded(ILogger logger, Guid sessionId, long steps, string reason);

    [LoggerMessage(3105, LogLevel.Warning, "Accepting a connection failed")]
    public static partial void AcceptFailed(ILogger logger, Exception exception);

    [LoggerMessage(3106, LogLevel.Error, "Unexpected failure on the connection from {Remote}")]
    public static partial void ConnectionFailed(ILogger logger, PeerAddress remote, Exception exception);

    [LoggerMessage(3107, LogLevel.Information, "Block server stopped")]
    public static partial void Stopped(ILogger logger);
}
