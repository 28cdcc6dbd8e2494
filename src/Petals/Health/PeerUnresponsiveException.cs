namespace Petals.Health;

/// <summary>
/// A server with a call waiting stayed silent, not even answering pings, past the liveness timeout: the connection is
/// considered dead. A <see cref="TimeoutException"/>, so callers that catch timeouts catch it; failure detection
/// classifies it as <see cref="Routing.PeerFailureKind.Unresponsive"/> rather than a slow answer.
/// </summary>
internal sealed class PeerUnresponsiveException : TimeoutException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What was silent, and for how long.</param>
    public PeerUnresponsiveException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception around the one that first detected the silence.</summary>
    /// <param name="message">What was silent, and for how long.</param>
    /// <param name="innerException">The first detection.</param>
    public PeerUnresponsiveException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
