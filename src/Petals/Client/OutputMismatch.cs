using Petals.Models;

namespace Petals.Client;

/// <summary>
/// A spot check that found a server's output wrong, or disputed (<see cref="RemoteTransformerBlocks.VerificationFailed"/>):
/// which server, for which blocks and positions, by how much, and what was done.
/// </summary>
/// <param name="PeerId">The peer id of the checked server (the one the session's chain used).</param>
/// <param name="Address">Where that server listens.</param>
/// <param name="Blocks">The blocks the server ran for the session.</param>
/// <param name="Position">The first position of the checked step.</param>
/// <param name="Tokens">The positions of the checked step.</param>
/// <param name="Error">The largest relative L2 error of a row between the server's answer and the recomputation.</param>
/// <param name="Tolerance">The tolerance the check allowed (from both sides' stated error bounds).</param>
/// <param name="Verifiers">Who recomputed: <c>local</c> for the client's own blocks, else the verifying servers' peer ids.</param>
/// <param name="Verdict">What the check concluded.</param>
/// <param name="Banned">The peers banned for it (<see cref="Petals.Routing.PeerFailureKind.WrongOutput"/> when proven, <see cref="Petals.Routing.PeerFailureKind.OutputDisputed"/> when unresolved).</param>
public sealed record OutputMismatch(
    string PeerId,
    Transport.PeerAddress Address,
    BlockRange Blocks,
    int Position,
    int Tokens,
    double Error,
    double Tolerance,
    IReadOnlyList<string> Verifiers,
    OutputVerdict Verdict,
    IReadOnlyList<string> Banned)
{
    /// <inheritdoc />
    public override string ToString() => System.FormattableString.Invariant(
        $"server {PeerId} at {Address} (blocks {Blocks}), positions {Position}..{Position + Tokens - 1}: relative error {Error:G3} > tolerance {Tolerance:G3} against {string.Join(", ", Verifiers)}; verdict {Verdict}; banned {(Banned.Count == 0 ? "none" : string.Join(", ", Banned))}");
}
