using System.Collections.Concurrent;
using Petals.Transport;

namespace Petals.Testing.Transport;

/// <summary>
/// The transport that <see cref="TransportShapingExtensions.WithShaping"/> returns: a decorator that imposes the
/// latency, bandwidth, jitter and faults of its <see cref="Options"/> on every stream it opens or accepts, and can abort
/// the streams it opened to one address on demand (<see cref="AbortStreams"/>).
/// </summary>
/// <remarks>
/// A server killed with <c>kill -9</c>, as its clients see it, is <see cref="AbortStreams"/> for its address plus the
/// address in <see cref="NetworkShapingOptions.RefusedAddresses"/>; a hung server is the address in
/// <see cref="NetworkShapingOptions.StalledAddresses"/>. All members are thread-safe.
/// </remarks>
public sealed class ShapingTransport : DelegatingTransport
{
    private readonly Random _jitter;
    private readonly Lock _jitterLock = new();
    private readonly ConcurrentDictionary<ShapedStream, PeerAddress> _connected = new();

    internal ShapingTransport(ITransport inner, NetworkShapingOptions options, TimeProvider timeProvider)
        : base(inner)
    {
        Options = options;
        TimeProvider = timeProvider;
        _jitter = new Random(options.Seed);
    }

    /// <summary>The conditions and faults imposed (the instance given to <see cref="TransportShapingExtensions.WithShaping"/>; changes apply to later operations).</summary>
    public NetworkShapingOptions Options { get; }

    /// <summary>The clock of delays and timed faults.</summary>
    public TimeProvider TimeProvider { get; }

    /// <inheritdoc/>
    public override async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (Options.RefuseAllConnects || Options.RefusedAddresses.Contains(address))
        {
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"Connection to {address} refused: fault injected by the network shaper.");
        }

        var stream = await InnerTransport.ConnectAsync(address, cancellationToken).ConfigureAwait(false);
        var target = address.WithPeerId(null);
        var shaped = new ShapedStream(stream, this, target, onDisposed: s => _connected.TryRemove(s, out _));
        _connected[shaped] = target;
        return shaped;
    }

    /// <inheritdoc/>
    public override async ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default)
    {
        var listener = await InnerTransport.ListenAsync(bindAddress, cancellationToken).ConfigureAwait(false);
        return new ShapingListener(listener, this);
    }

    /// <summary>
    /// Aborts every open stream this transport connected to <paramref name="address"/> (compared without peer id), as
    /// <see cref="NetworkShapingOptions.DropAfterBytes"/> does: both directions at both ends, the local end failing with
    /// <see cref="TransportErrorKind.Aborted"/> "aborted locally: <paramref name="reason"/>" and the peer's end with
    /// "aborted by peer: <paramref name="reason"/>". Streams accepted by this transport's listeners are not touched (the
    /// peers' ends of the aborted streams are aborted through the connection). Later connects are not refused: add the
    /// address to <see cref="NetworkShapingOptions.RefusedAddresses"/> for that.
    /// </summary>
    /// <param name="address">The remote address the streams were connected to.</param>
    /// <param name="reason">The abort reason both ends see, e.g. <c>"fault injected: server killed"</c>.</param>
    /// <returns>How many streams were aborted (streams that had already failed or were disposed are not counted).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="reason"/> is null.</exception>
    public int AbortStreams(PeerAddress address, string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        var target = address.WithPeerId(null);
        var aborted = 0;
        foreach (var (stream, connectedTo) in _connected)
        {
            if (connectedTo == target && stream.TryAbort(reason))
            {
                aborted++;
            }
        }

        return aborted;
    }

    /// <inheritdoc/>
    public override object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is null && serviceType == typeof(NetworkShapingOptions) ? Options : base.GetService(serviceType, serviceKey);
    }

    /// <summary>A one-way jitter drawn uniformly from [0, Jitter].</summary>
    internal TimeSpan NextJitter()
    {
        var max = Options.Jitter;
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
        private readonly PeerAddress _address = inner.LocalAddress.WithPeerId(null);

        public PeerAddress LocalAddress => inner.LocalAddress;

        public async ValueTask<ITransportStream> AcceptAsync(CancellationToken cancellationToken = default)
        {
            var stream = await inner.AcceptAsync(cancellationToken).ConfigureAwait(false);
            return new ShapedStream(stream, owner, _address, onDisposed: null);
        }

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
