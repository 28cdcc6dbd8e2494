using Petals.Execution;

namespace Petals.Client;

/// <summary>
/// Spot checks of the servers' outputs (<c>docs/verification.md</c>): after a session step runs through a span of its
/// chain, with probability <see cref="Rate"/> the client recomputes that span's outputs for the step — a stateless
/// forward of the span's whole input history over the same blocks, on <see cref="LocalExecutor"/> when it holds them,
/// else on other servers — and compares them with the server's answer within the tolerance both sides state. A server
/// proven wrong is banned (<see cref="Petals.Routing.PeerFailureKind.WrongOutput"/>) and replaced like a failed one before its
/// output reaches the next span or the caller, and <see cref="RemoteTransformerBlocks.VerificationFailed"/> is raised.
/// </summary>
public sealed class VerificationOptions
{
    /// <summary>
    /// The probability, in [0, 1], that a span's answer to a step is checked (each span of each step drawn
    /// independently). A server that lies on every step is caught within N of its steps with probability
    /// <c>1 − (1 − Rate)^N</c>; each check costs one stateless pass over the span's whole history. Default 0 (off) for
    /// the library; <c>petals generate</c> defaults to 0.05 (<c>--verify-rate</c>).
    /// </summary>
    public double Rate { get; set; }

    /// <summary>
    /// Blocks this client runs itself, trusted: when they cover a checked span, the check runs here (no server is asked,
    /// and a disagreement convicts the server at once). Null (default): checks run on other servers. The client does
    /// not dispose it.
    /// </summary>
    public IBlockExecutor? LocalExecutor { get; set; }

    /// <summary>
    /// The draws of which spans to check; seed it for repeatable runs. Used under a lock, so one instance may serve
    /// several sequences. Null (default): <see cref="System.Random.Shared"/>.
    /// </summary>
    public Random? Random { get; set; }

    /// <summary>
    /// The most tolerance a check ever allows, in (0, 1]: a server stating a larger error (to hide lies in it) is held
    /// to this instead. Default 0.05 (5 % relative L2 error per row, above any 8-bit or 4-bit quantization's).
    /// </summary>
    public double MaxTolerance { get; set; } = 0.05;

    /// <summary>
    /// The relative error bound assumed for a server that states none (a protocol 1.0 server): default
    /// <see cref="NumericErrorBound.Fp32"/>'s 1e-4.
    /// </summary>
    public double AssumedServerError { get; set; } = NumericErrorBound.Fp32.RelativeError;

    /// <summary>Whether checks run at all (<see cref="Rate"/> above 0).</summary>
    public bool Enabled => Rate > 0;

    /// <summary>A copy whose changes do not affect this instance (the executor and random source are shared).</summary>
    /// <returns>The copy.</returns>
    public VerificationOptions Clone() => (VerificationOptions)MemberwiseClone();

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentOutOfRangeException">When a value is out of range; the message names it.</exception>
    public void Validate()
    {
        if (!(Rate >= 0 && Rate <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(Rate), Rate, "Rate must be in [0, 1] (0 disables verification).");
        }

        if (!(MaxTolerance > 0 && MaxTolerance <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(MaxTolerance), MaxTolerance, "MaxTolerance must be in (0, 1].");
        }

        if (!(AssumedServerError >= 0 && AssumedServerError <= MaxTolerance))
        {
            throw new ArgumentOutOfRangeException(nameof(AssumedServerError), AssumedServerError, $"AssumedServerError must be in [0, MaxTolerance ({MaxTolerance})].");
        }
    }
}
