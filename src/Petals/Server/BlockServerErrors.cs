using Petals.Protocol;

namespace Petals.Server;

/// <summary>
/// Error codes a block server sends besides those of <see cref="ProtocolErrorCode"/> (docs/wire-protocol.md, section 6,
/// "Block server codes"). Codes are open strings, so older clients keep them as they are.
/// </summary>
public static class BlockServerErrors
{
    /// <summary>The server is shutting down: the session or call ended before it completed; retry on another server.</summary>
    public static ProtocolErrorCode ShuttingDown { get; } = new("shutting_down");

    /// <summary>The session received nothing for longer than the server's idle timeout; its cache was freed.</summary>
    public static ProtocolErrorCode SessionTimeout { get; } = new("session_timeout");

    /// <summary>A request exceeds a server limit that retrying cannot cure (batch × tokens, session length).</summary>
    public static ProtocolErrorCode RequestTooLarge { get; } = new("request_too_large");

    /// <summary>The request uses a feature this server does not implement (e.g. deep prompts).</summary>
    public static ProtocolErrorCode Unsupported { get; } = new("unsupported");

    /// <summary>The call names an adapter the server does not hold (for the requested blocks); the message lists those it has.</summary>
    public static ProtocolErrorCode UnknownAdapter { get; } = new("unknown_adapter");
}
