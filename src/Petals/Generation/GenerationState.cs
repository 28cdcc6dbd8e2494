namespace Petals.Generation;

/// <summary>What a caller of the shared generation loop needs to know about its session while the loop runs.</summary>
internal sealed class GenerationState
{
    /// <summary>True while a forward step is in flight: a step that failed or was cancelled leaves the session unusable.</summary>
    public bool Forwarding { get; set; }
}
