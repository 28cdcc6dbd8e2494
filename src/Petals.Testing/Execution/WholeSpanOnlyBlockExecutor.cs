using Petals.Execution;
using Petals.Models;

namespace Petals.Testing.Execution;

/// <summary>
/// An executor that implements only the members <see cref="IBlockExecutor"/> had before sub-ranges of a span (it
/// forwards them to an inner executor's whole span), so calls for a sub-range reach the interface's default members: what
/// a third-party executor written against the first contract looks like to a server. Deliberately not a
/// <see cref="DelegatingBlockExecutor"/>, which forwards the sub-range members too.
/// </summary>
/// <param name="inner">The executor whose whole span runs.</param>
/// <param name="ownsInner">Whether disposing this disposes <paramref name="inner"/>.</param>
public sealed class WholeSpanOnlyBlockExecutor(IBlockExecutor inner, bool ownsInner = true) : IBlockExecutor
{
    /// <inheritdoc />
    public ModelConfig Config => inner.Config;

    /// <inheritdoc />
    public BlockRange Blocks => inner.Blocks;

    /// <inheritdoc />
    public IKvCache CreateCache(int batchSize, int maxLength) => inner.CreateCache(batchSize, maxLength);

    /// <inheritdoc />
    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) => inner.Forward(hidden, batchSize, tokenCount, cache);

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null) => inner.GetService(serviceType, serviceKey);

    /// <inheritdoc />
    public void Dispose()
    {
        if (ownsInner)
        {
            inner.Dispose();
        }
    }
}
