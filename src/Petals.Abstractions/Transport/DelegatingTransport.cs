namespace Petals.Transport;

/// <summary>
/// A transport that passes every call to an inner one: the base of transport decorators (network shaping, fault
/// injection, tampering, tracing). Override the members whose behaviour changes; the rest forward unchanged.
/// </summary>
/// <remarks>
/// Decorators are composed on the builders with <c>Use(inner =&gt; new MyTransport(inner))</c>; the first <c>Use</c> is
/// the outermost. <see cref="GetService"/> answers for this object first, then asks the inner transport. Thread-safety
/// is the inner transport's.
/// </remarks>
public abstract class DelegatingTransport : ITransport
{
    /// <summary>Wraps <paramref name="innerTransport"/>.</summary>
    /// <param name="innerTransport">The transport every call is passed to.</param>
    /// <exception cref="ArgumentNullException"><paramref name="innerTransport"/> is null.</exception>
    protected DelegatingTransport(ITransport innerTransport)
    {
        ArgumentNullException.ThrowIfNull(innerTransport);
        InnerTransport = innerTransport;
    }

    /// <summary>The transport every call is passed to.</summary>
    protected ITransport InnerTransport { get; }

    /// <inheritdoc />
    public virtual string Name => InnerTransport.Name;

    /// <inheritdoc />
    public virtual ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default) =>
        InnerTransport.ConnectAsync(address, cancellationToken);

    /// <inheritdoc />
    public virtual ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default) =>
        InnerTransport.ListenAsync(bindAddress, cancellationToken);

    /// <inheritdoc />
    public virtual object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is null && serviceType.IsInstanceOfType(this) ? this : InnerTransport.GetService(serviceType, serviceKey);
    }
}
