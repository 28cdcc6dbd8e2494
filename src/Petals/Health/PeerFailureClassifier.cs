using Petals.Client;
using Petals.Protocol;
using Petals.Routing;
using Petals.Transport;

namespace Petals.Health;

/// <summary>
/// Failure detection's last step: whether an exception from a call means the server (or the way to it) failed, and
/// which <see cref="PeerFailureKind"/> it was. Anything else (the caller's cancellation, a bug on this side) is not a
/// server failure and must reach the caller unchanged.
/// </summary>
internal static class PeerFailureClassifier
{
    /// <summary>Classifies <paramref name="error"/> raised by a call to a server.</summary>
    /// <param name="error">What the call threw.</param>
    /// <param name="cancellationToken">The caller's token: once it is canceled nothing counts as the server's failure.</param>
    /// <param name="connecting">Whether the call was connecting (a transport failure then means the server is unreachable).</param>
    /// <returns>The kind of failure, or null when <paramref name="error"/> is not the server's.</returns>
    public static PeerFailureKind? Classify(Exception error, CancellationToken cancellationToken, bool connecting = false)
    {
        ArgumentNullException.ThrowIfNull(error);
        if (cancellationToken.IsCancellationRequested)
        {
            return null;
        }

        return error switch
        {
            OutputVerificationException verification => verification.Kind,
            RemoteChainException => PeerFailureKind.Mismatch,
            PeerUnresponsiveException => PeerFailureKind.Unresponsive,
            TimeoutException => connecting ? PeerFailureKind.Unreachable : PeerFailureKind.Timeout,
            ProtocolException { IsConnectionFatal: true } => connecting ? PeerFailureKind.Unreachable : PeerFailureKind.ConnectionLost,
            // The caller's own inputs held a NaN or infinity: not the server's failure, and another server would refuse them too.
            ProtocolException { IsRemoteError: true } e when e.Code == ProtocolErrorCode.NonFiniteInput => null,

            // cache_busy (this client's share of the server's cache is taken) and cache_exhausted (the wait for cache timed
            // out) are retryable elsewhere: an error answer, so recovery bans the server for a while and routes around it.
            ProtocolException { IsRemoteError: true } => PeerFailureKind.ErrorAnswer,
            ProtocolException => connecting ? PeerFailureKind.Mismatch : PeerFailureKind.MalformedAnswer,
            TransportException or IOException or ObjectDisposedException => connecting ? PeerFailureKind.Unreachable : PeerFailureKind.ConnectionLost,
            _ => null,
        };
    }
}
