using Petals.Models;

namespace Petals.Discovery;

/// <summary>
/// A discovery that passes every call to an inner one: the base of discovery decorators (caching, filtering,
/// fault injection, tracing). Override the members whose behaviour changes; the rest forward unchanged.
/// </summary>
/// <remarks>
/// Decorators are composed on the builders with <c>Use(inner =&gt; new MyDiscovery(inner))</c>; the first <c>Use</c> is
/// the outermost. Thread-safety is the inner discovery's.
/// </remarks>
public abstract class DelegatingPeerDiscovery : IPeerDiscovery
{
    /// <summary>Wraps <paramref name="innerDiscovery"/>.</summary>
    /// <param name="innerDiscovery">The discovery every call is passed to.</param>
    /// <exception cref="ArgumentNullException"><paramref name="innerDiscovery"/> is null.</exception>
    protected DelegatingPeerDiscovery(IPeerDiscovery innerDiscovery)
    {
        ArgumentNullException.ThrowIfNull(innerDiscovery);
        InnerDiscovery = innerDiscovery;
    }

    /// <summary>The discovery every call is passed to.</summary>
    protected IPeerDiscovery InnerDiscovery { get; }

    /// <inheritdoc />
    public virtual string LocalPeerId => InnerDiscovery.LocalPeerId;

    /// <inheritdoc />
    public virtual Task<int> AnnounceAsync(string modelId, int blockCount, ServerInfo info, TimeSpan timeToLive, CancellationToken cancellationToken = default) =>
        InnerDiscovery.AnnounceAsync(modelId, blockCount, info, timeToLive, cancellationToken);

    /// <inheritdoc />
    public virtual Task<IReadOnlyList<BlockServers>> GetServersAsync(string modelId, BlockRange blocks, CancellationToken cancellationToken = default) =>
        InnerDiscovery.GetServersAsync(modelId, blocks, cancellationToken);

    /// <inheritdoc />
    public virtual Task<IReadOnlyList<SwarmModelInfo>> GetModelsAsync(CancellationToken cancellationToken = default) =>
        InnerDiscovery.GetModelsAsync(cancellationToken);
}
