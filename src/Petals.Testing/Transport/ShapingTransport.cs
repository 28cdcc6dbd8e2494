using Petals.Transport;

namespace Petals.Testing.Transport;

internal sealed class ShapingTransport(ITransport inner, NetworkShapingOptions options, TimeProvider timeProvider) : ITransport
{
    private readonly Random _jitter = new(options.Seed);
    private readonly Lock _jitterLock = new();

    public string Name => inner.Name;

    public NetworkShapingOptions Options => options;

    public TimeProvider TimeProvider => timeProvider;

    public async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (options.RefuseAllConnects || options.RefusedAddresses.Contains(address))
        {
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"Connection to {address} refused: fault injected by the network shaper.");
        }

        var stream = await inner.ConnectAsync(address, cancellationToken).ConfigureAwait(false);
        return new ShapedStream(stream, this);
    }

    public async ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default)
    {
        var listener = await inner.ListenAsync(bindAddress, cancellationToken).ConfigureAwait(false);
        return new ShapingListener(listener, this);
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is null)
        {
            if (serviceType.IsInstanceOfType(this))
            {
                return this;
            }

            if (serviceType == typeof(NetworkShapingOptions))
            {
                return options;
            }
        }

        return inner.GetService(serviceType, serviceKey);
    }

    /// <summary>A one-way jitter drawn uniformly from [0, Jitter].</summary>
    internal TimeSpan NextJitter()
    {
        var max = options.Jitter;
        if (max <= TimeSpan.Zero)
        {
            return TimeSpan.Zero;
        }

        lock (_jitterLock)
        {
            return TimeSpan.FromTicks((long)(_jitter.NextDouble() * max.Ticks));
        }
    }

    private sealed class ShapingListener(ITransportListener inner, ShapingTransport owner) : ITransportListener
    {
        public PeerAddress LocalAddress => inner.LocalAddress;

        public async ValueTask<ITransportStream> AcceptAsync(CancellationToken cancellationToken = default)
        {
            var stream = await inner.AcceptAsync(cancellationToken).ConfigureAwait(false);
            return new ShapedStream(stream, owner);
        }

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
