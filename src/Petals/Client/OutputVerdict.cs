namespace Petals.Client;

/// <summary>What a check that found a disagreement concluded (<see cref="OutputMismatch.Verdict"/>).</summary>
public enum OutputVerdict
{
    /// <summary>The checked server was wrong: a trusted local recomputation, or a third opinion, sided with the verifier. It is banned and replaced.</summary>
    ServerWrong,

    /// <summary>The verifying servers were wrong: a third opinion sided with the checked server. They are banned; the step's output stands.</summary>
    VerifierWrong,

    /// <summary>Two opinions disagreed and no third could decide (or it agreed with neither): both sides get an ordinary, doubling ban and the checked span is replaced.</summary>
    Unresolved,
}
