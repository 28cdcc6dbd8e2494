namespace Petals.Protocol;

/// <summary>A violation of the wire protocol: a malformed, oversized or out-of-order frame, or a failed handshake.</summary>
/// <remarks>The message names the field at fault; <see cref="Code"/> is the code sent to the peer in an error frame.</remarks>
public sealed class ProtocolException : Exception
{
    /// <summary>Creates an exception with code <see cref="ProtocolErrorCode.Internal"/>.</summary>
    public ProtocolException()
        : this(ProtocolErrorCode.Internal, "Protocol error.")
    {
    }

    /// <summary>Creates an exception with code <see cref="ProtocolErrorCode.Internal"/>.</summary>
    /// <param name="message">What went wrong.</param>
    public ProtocolException(string message)
        : this(ProtocolErrorCode.Internal, message)
    {
    }

    /// <summary>Creates an exception with code <see cref="ProtocolErrorCode.Internal"/>.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public ProtocolException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = ProtocolErrorCode.Internal;
    }

    /// <summary>Creates an exception.</summary>
    /// <param name="code">The error code.</param>
    /// <param name="message">What went wrong, naming the field at fault.</param>
    public ProtocolException(ProtocolErrorCode code, string message)
        : base(message)
    {
        Code = code;
    }

    /// <summary>Creates an exception with a cause.</summary>
    /// <param name="code">The error code.</param>
    /// <param name="message">What went wrong, naming the field at fault.</param>
    /// <param name="innerException">The cause.</param>
    public ProtocolException(ProtocolErrorCode code, string message, Exception innerException)
        : base(message, innerException)
    {
        Code = code;
    }

    /// <summary>The error code.</summary>
    public ProtocolErrorCode Code { get; }

    /// <summary>The stream id of the frame at fault, when known; 0 for connection-level errors.</summary>
    public uint StreamId { get; init; }

    /// <summary>
    /// Whether the peer itself sent this error (an Error frame answering a call, e.g. <c>cache_exhausted</c>), as
    /// opposed to a malformed or unexpected message detected on this side. Failure detection tells a server that
    /// refused a call from one that answered nonsense by it.
    /// </summary>
    public bool IsRemoteError { get; init; }

    /// <summary>
    /// Whether framing is lost (a bad header, broken chunking, a truncated frame): the connection must be closed.
    /// When <see langword="false"/>, only the call on <see cref="StreamId"/> failed and the connection can keep serving.
    /// </summary>
    public bool IsConnectionFatal { get; init; }
}
