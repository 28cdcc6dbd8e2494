namespace Petals.Transport.Multiplexing;

/// <summary>Wraps any transport so that its streams share one physical connection per peer.</summary>
public static class TransportMultiplexingExtensions
{
    /// <summary>
    /// Returns a transport that opens one physical connection (and, over TLS, one handshake) per remote address and
    /// carries every stream to that address as a logical channel on it (Nerdbank.Streams' multiplexer); its listeners
    /// accept channels. Both ends must multiplex. Disposing the returned transport (it is <see cref="IAsyncDisposable"/>)
    /// closes its pooled connections.
    /// </summary>
    /// <param name="transport">The transport of the physical connections (TCP, TLS, in-memory, shaped, …).</param>
    /// <param name="options">Limits and timeouts; defaults when null. Copied: later changes do not apply.</param>
    /// <returns>The multiplexing transport.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="transport"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public static ITransport WithMultiplexing(this ITransport transport, MultiplexingTransportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(transport);
        var copy = (options ?? new MultiplexingTransportOptions()).Clone();
        copy.Validate();
        return new MultiplexingTransport(transport, copy);
    }
}
