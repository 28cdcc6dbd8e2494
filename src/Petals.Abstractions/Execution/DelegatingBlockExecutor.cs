using Petals.Models;

namespace Petals.Execution;

/// <summary>
/// A block executor that passes every call to an inner one: the base of executor decorators (fault injection,
/// recording, tracing, throttling). Override the members whose behaviour changes; the rest forward unchanged.
/// </summary>
/// <remarks>
/// Decorators are composed on the server builder with <c>Use(inner =&gt; new MyExecutor(inner))</c>; the first
/// <c>Use</c> is the outermost. <see cref="GetService"/> answers for this object first, then asks the inner executor,
/// so a caller can find any layer of the pipeline. Disposing disposes the inner executor. Thread-safety is the inner
/// executor's.
/// </remarks>
public abstract class DelegatingBlockExecutor : IBlockExecutor
{
    private int _disposed;

    /// <summary>Wraps <paramref name="innerExecutor"/>.</summary>
    /// <param name="innerExecutor">The executor every call is passed to.</param>
    /// <exception cref="ArgumentNullException"><paramref name="innerExecutor"/> is null.</exception>
    protected DelegatingBlockExecutor(IBlockExecutor innerExecutor)
    {
        ArgumentNullException.ThrowIfNull(innerExecutor);
        InnerExecutor = innerExecutor;
    }

    /// <summary>The executor every call is passed to.</summary>
    protected IBlockExecutor InnerExecutor { get; }

    /// <inheritdoc />
    public virtual ModelConfig Config => InnerExecutor.Config;

    /// <inheritdoc />
    public virtual BlockRange Blocks => InnerExecutor.Blocks;

    /// <inheritdoc />
    public virtual IKvCache CreateCache(int batchSize, int maxLength) => InnerExecutor.CreateCache(batchSize, maxLength);

    /// <inheritdoc />
    public virtual IKvCache CreateCache(int batchSize, int maxLength, BlockRange blocks) => InnerExecutor.CreateCache(batchSize, maxLength, blocks);

    /// <inheritdoc />
    public virtual void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) =>
        InnerExecutor.Forward(hidden, batchSize, tokenCount, cache);

    /// <inheritdoc />
    public virtual void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks) =>
        InnerExecutor.Forward(hidden, batchSize, tokenCount, cache, blocks);

    /// <inheritdoc />
    public virtual void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks, BlockAdaptation? adaptation) =>
        InnerExecutor.Forward(hidden, batchSize, tokenCount, cache, blocks, adaptation);

    /// <inheritdoc />
    public virtual void Backward(ReadOnlySpan<float> inputs, Span<float> gradients, int batchSize, int tokenCount, BlockRange blocks, BlockAdaptation? adaptation = null, BlockGradients? adaptationGradients = null) =>
        InnerExecutor.Backward(inputs, gradients, batchSize, tokenCount, blocks, adaptation, adaptationGradients);

    /// <inheritdoc />
    public virtual object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is null && serviceType.IsInstanceOfType(this) ? this : InnerExecutor.GetService(serviceType, serviceKey);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Dispose(disposing: true);
            GC.SuppressFinalize(this);
        }
    }

    /// <summary>Disposes the inner executor; override to release what the decorator holds (call the base).</summary>
    /// <param name="disposing">True when called from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            InnerExecutor.Dispose();
        }
    }
}
