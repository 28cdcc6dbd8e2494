namespace Petals.Client;

/// <summary>
/// A server's output failed a spot check (<see cref="VerificationOptions"/>): the session replaces the server like a
/// failed one; the caller sees this only when recovery is off (<see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/> 0).
/// </summary>
public sealed class OutputVerificationException : Exception
{
    /// <summary>Creates the exception for <paramref name="mismatch"/>.</summary>
    /// <param name="mismatch">What the check found.</param>
    public OutputVerificationException(OutputMismatch mismatch)
        : base("Output verification failed: " + (mismatch ?? throw new ArgumentNullException(nameof(mismatch))))
    {
        Mismatch = mismatch;
    }

    /// <summary>Creates the exception with a message only (serialization and tooling).</summary>
    public OutputVerificationException()
        : base("Output verification failed.")
    {
    }

    /// <summary>Creates the exception with a message only.</summary>
    /// <param name="message">The message.</param>
    public OutputVerificationException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public OutputVerificationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>What the check found; null only for an exception made without one.</summary>
    public OutputMismatch? Mismatch { get; }

    /// <summary>How the checked server is reported: <see cref="Petals.Routing.PeerFailureKind.WrongOutput"/> when proven, else <see cref="Petals.Routing.PeerFailureKind.OutputDisputed"/>.</summary>
    public global::Petals.Routing.PeerFailureKind Kind => Mismatch?.Verdict == OutputVerdict.ServerWrong ? global::Petals.Routing.PeerFailureKind.WrongOutput : global::Petals.Routing.PeerFailureKind.OutputDisputed;
}
