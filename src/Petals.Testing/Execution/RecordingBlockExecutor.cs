using System.Collections.Concurrent;
using Petals.Execution;
using Petals.Models;

namespace Petals.Testing.Execution;

/// <summary>
/// An executor decorator that records, in order, whether each pass was an inference step (with a cache: <c>"step"</c>)
/// or a stateless forward (<c>"forward"</c>), then runs it on the inner executor: to check a server's scheduling.
/// </summary>
/// <remarks>Thread-safe.</remarks>
/// <param name="inner">The executor that runs the passes.</param>
public sealed class RecordingBlockExecutor(IBlockExecutor inner) : DelegatingBlockExecutor(inner)
{
    private readonly ConcurrentQueue<string> _calls = new();

    /// <summary>The passes so far, in the order they started.</summary>
    public IReadOnlyCollection<string> Calls => _calls;

    /// <inheritdoc />
    public override void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) => Forward(hidden, batchSize, tokenCount, cache, Blocks);

    /// <inheritdoc />
    public override void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks)
    {
        _calls.Enqueue(cache is null ? "forward" : "step");
        base.Forward(hidden, batchSize, tokenCount, cache, blocks);
    }
}
