namespace Petals.Transport;

/// <summary>
/// A transport operation failed: the peer refused or reset the connection, a stream was aborted (the message
/// carries the abort reason), an internal timeout ran out, or authentication failed. Caller cancellation
/// surfaces as <see cref="OperationCanceledException"/>, never as this type.
/// </summary>
public sealed class TransportException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="kind">What went wrong.</param>
    /// <param name="message">A message naming the peer address and the cause.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public TransportException(TransportErrorKind kind, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Kind = kind;
    }

    /// <summary>What went wrong.</summary>
    public TransportErrorKind Kind { get; }

    /// <summary>
    /// The error for an operation on a stream this side aborted: <see cref="TransportErrorKind.Aborted"/>, message
    /// <c>"Stream with {remote} aborted locally: {reason}"</c>. Every transport words it this way.
    /// </summary>
    /// <param name="remote">The stream's remote address.</param>
    /// <param name="reason">The reason given to <see cref="ITransportStream.Abort"/>.</param>
    /// <returns>The exception.</returns>
    public static TransportException AbortedLocally(PeerAddress remote, string reason) =>
        new(TransportErrorKind.Aborted, $"Stream with {remote} aborted locally: {reason}");

    /// <summary>
    /// The error for an operation on a stream the peer aborted: <see cref="TransportErrorKind.Aborted"/>, message
    /// <c>"Stream with {remote} aborted by peer: {reason}"</c> (see <see cref="ITransportStream"/>).
    /// </summary>
    /// <param name="remote">The stream's remote address.</param>
    /// <param name="reason">The peer's reason, or what the transport knows of it.</param>
    /// <returns>The exception.</returns>
    public static TransportException AbortedByPeer(PeerAddress remote, string reason) =>
        new(TransportErrorKind.Aborted, $"Stream with {remote} aborted by peer: {reason}");
}
