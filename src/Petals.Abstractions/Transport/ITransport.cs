namespace Petals.Transport;

/// <summary>
/// Opens bidirectional byte streams to peers and accepts streams from them. Everything above the transport
/// (wire protocol, block servers, clients, discovery) is written against this contract, so TCP, QUIC, an
/// in-memory transport and decorators (latency, bandwidth, faults) plug in the same way.
/// </summary>
/// <remarks>Implementations are thread-safe: many streams may be opened and accepted concurrently.</remarks>
public interface ITransport
{
    /// <summary>A short name of the transport (e.g. <c>"tcp"</c>), used in logs and error messages.</summary>
    string Name { get; }

    /// <summary>Opens a new stream to the peer listening at <paramref name="address"/>.</summary>
    /// <param name="address">The peer's address, e.g. <c>tcp://127.0.0.1:5000</c>.</param>
    /// <param name="cancellationToken">Cancels the connection attempt.</param>
    /// <returns>The open stream; the caller disposes it.</returns>
    /// <exception cref="TransportException">Nobody listens there (<see cref="TransportErrorKind.ConnectionRefused"/>), the connect timed out, or authentication failed.</exception>
    /// <exception cref="ArgumentException">The address's scheme is not one this transport handles.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default);

    /// <summary>Starts listening for incoming streams.</summary>
    /// <param name="bindAddress">Where to listen; for network transports port 0 picks a free port (see <see cref="ITransportListener.LocalAddress"/>).</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The listener; the caller disposes it to stop listening.</returns>
    /// <exception cref="TransportException">The address cannot be bound (<see cref="TransportErrorKind.AddressUnavailable"/>).</exception>
    /// <exception cref="ArgumentException">The address's scheme is not one this transport handles.</exception>
    ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default);

    /// <summary>Returns an object of the requested type that this transport provides (options, an inner transport), or null.</summary>
    /// <param name="serviceType">The type of object requested.</param>
    /// <param name="serviceKey">An optional key to select among objects of that type.</param>
    /// <returns>The object, or <see langword="null"/>.</returns>
    object? GetService(Type serviceType, object? serviceKey = null);
}
