using System.Collections.Concurrent;
using Petals.Transport;

namespace Petals.Testing.Transport;

/// <summary>
/// An in-memory network: listeners register under <c>mem://name</c> and connects to that name get a pair of
/// in-process pipes. Streams behave like network streams (ordering, back-pressure, half-close, abort with a
/// reason that the peer sees), so code written against <see cref="ITransport"/> runs unchanged in tests and
/// simulations. Share one instance between the "servers" and "clients" of a test.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class MemoryTransport : ITransport
{
    /// <summary>The scheme of in-memory addresses.</summary>
    public const string Scheme = "mem";

    private readonly ConcurrentDictionary<string, MemoryListener> _listeners = new(StringComparer.Ordinal);
    private long _nextClientId;

    /// <summary>Creates an empty in-memory network.</summary>
    /// <param name="bufferBytes">How many bytes one direction of a stream buffers before writes wait (back-pressure); default 1 MiB.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bufferBytes"/> is below 1 KiB.</exception>
    public MemoryTransport(int bufferBytes = 1 << 20)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferBytes, 1024);
        BufferBytes = bufferBytes;
    }

    /// <summary>How many bytes one direction of a stream buffers before writes wait.</summary>
    public int BufferBytes { get; }

    /// <inheritdoc/>
    public string Name => Scheme;

    /// <inheritdoc/>
    public ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        CheckScheme(address);
        cancellationToken.ThrowIfCancellationRequested();
        if (!_listeners.TryGetValue(address.Location, out var listener))
        {
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"Connection to {address} refused: nothing listens at '{address.Location}' in this in-memory network.");
        }

        var clientAddress = PeerAddress.Create(Scheme, "client-" + Interlocked.Increment(ref _nextClientId).ToString(System.Globalization.CultureInfo.InvariantCulture));
        var (client, server) = MemoryStreamEnd.CreatePair(listener.LocalAddress, clientAddress, BufferBytes);
        if (!listener.Offer(server))
        {
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"Connection to {address} refused: the listener closed.");
        }

        return ValueTask.FromResult<ITransportStream>(client);
    }

    /// <inheritdoc/>
    public ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default)
    {
        CheckScheme(bindAddress);
        cancellationToken.ThrowIfCancellationRequested();
        var listener = new MemoryListener(this, PeerAddress.Create(Scheme, bindAddress.Location));
        if (!_listeners.TryAdd(bindAddress.Location, listener))
        {
            throw new TransportException(TransportErrorKind.AddressUnavailable, $"Cannot listen at {bindAddress}: another listener already uses '{bindAddress.Location}'.");
        }

        return ValueTask.FromResult<ITransportListener>(listener);
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;
    }

    internal void Remove(MemoryListener listener) => _listeners.TryRemove(new KeyValuePair<string, MemoryListener>(listener.LocalAddress.Location, listener));

    private static void CheckScheme(PeerAddress address)
    {
        if (address.IsEmpty || address.Scheme != Scheme)
        {
            throw new ArgumentException($"The in-memory transport handles '{Scheme}://name' addresses, not '{address}'.", nameof(address));
        }
    }
}
