using Microsoft.Extensions.Logging;

namespace Petals.Extensions.AI;

/// <summary>The chat client's log messages (stable event ids 6100-6149).</summary>
internal static partial class ChatClientLog
{
    [LoggerMessage(6100, LogLevel.Debug, "Turn continues a kept session: {Cached} of {Prompt} prompt tokens already processed, {New} to prefill")]
    public static partial void Reused(ILogger logger, int cached, int prompt, int @new);

    [LoggerMessage(6101, LogLevel.Debug, "No kept session extends this prompt ({Prompt} tokens); opening a conversation session of {Length} positions")]
    public static partial void Opened(ILogger logger, int prompt, int length);

    [LoggerMessage(6102, LogLevel.Debug, "The turn ({Prompt} prompt tokens + {MaxNew} new) does not fit a conversation of {Length} positions; it runs on a session of its own")]
    public static partial void TooLong(ILogger logger, int prompt, int maxNew, int length);

    [LoggerMessage(6103, LogLevel.Warning, "A conversation session of {Length} positions could not be opened; turns run on sessions of their own sizes from now on")]
    public static partial void OpenFailed(ILogger logger, int length, Exception error);

    [LoggerMessage(6104, LogLevel.Debug, "Closed {Count} kept conversation sessions (least recently used beyond {Bound}, unusable, or outgrown)")]
    public static partial void Closed(ILogger logger, int count, int bound);
}
