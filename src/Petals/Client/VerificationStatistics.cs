namespace Petals.Client;

/// <summary>What the spot checks of a remote sequence did so far (<see cref="RemoteTransformerBlocks.Verification"/>).</summary>
/// <param name="Checks">Span answers recomputed and compared.</param>
/// <param name="Skipped">Span answers drawn for a check that nobody else could recompute (no other server or local blocks, or the verifiers failed).</param>
/// <param name="Mismatches">Checks that found the answer outside the tolerance (whatever the verdict).</param>
/// <param name="BlockPositions">The extra compute the checks cost: block × position × sequence passes run to recompute (local and remote).</param>
/// <param name="LargestPassedError">The largest relative error of a check that passed: how close honest servers came to the tolerance.</param>
public sealed record VerificationStatistics(long Checks, long Skipped, long Mismatches, long BlockPositions, double LargestPassedError);
