namespace Petals.Testing.Execution;

/// <summary>How a <see cref="LyingBlockExecutor"/> falsifies a pass it lies on.</summary>
public enum LieKind
{
    /// <summary>Returns the pass's input unchanged, as if its blocks were skipped (the cheapest lie: no compute).</summary>
    Echo,

    /// <summary>Computes honestly, then adds Gaussian noise of <see cref="LyingBlockExecutor.NoiseScale"/> times each row's RMS.</summary>
    Noise,
}
