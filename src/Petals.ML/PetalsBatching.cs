namespace Petals.ML;

internal static class PetalsBatching
{
    /// <summary>The largest batch a cursor gathers.</summary>
    internal const int MaxBatchSize = 4096;
}
