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
}
