using Petals.Transport;

namespace Petals.Benchmarks;

/// <summary>
/// A transport decorator that remembers the streams each listener accepted, so that a benchmark can make a server
/// "fail": <see cref="AbortServer"/> aborts every connection the server holds (the clients see them aborted with the
/// reason) while its listener keeps accepting, as a server that crashed and restarted at once would.
/// </summary>
internal sealed class AbortableTransport(ITransport inner) : ITransport
{
    private readonly Lock _gate = new();
    private readonly Dictionary<PeerAddress, List<ITransportStream>> _accepted = [];

    public string Name => inner.Name;

    public ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default) =>
        inner.ConnectAsync(address, cancellationToken);

    public async ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default)
    {
        var listener = await inner.ListenAsync(bindAddress, cancellationToken).ConfigureAwait(false);
        return new Listener(listener, this);
    }

    public object? GetService(Type serviceType, object? serviceKey = null) => inner.GetService(serviceType, serviceKey);

    /// <summary>Aborts every stream the listener at <paramref name="address"/> accepted so far; returns how many were still tracked.</summary>
    /// <param name="address">The listener's address (its peer id part is ignored).</param>
    /// <param name="reason">The reason the peers see.</param>
    /// <returns>The number of streams aborted (open or not).</returns>
    public int AbortServer(PeerAddress address, string reason)
    {
        List<ITransportStream>? streams;
        lock (_gate)
        {
            if (!_accepted.Remove(address.WithPeerId(null), out streams))
            {
                return 0;
            }
        }

        foreach (var stream in streams)
        {
            stream.Abort(reason);
        }

        return streams.Count;
    }

    private void Track(PeerAddress listener, ITransportStream stream)
    {
        var key = listener.WithPeerId(null);
        lock (_gate)
        {
            if (!_accepted.TryGetValue(key, out var list))
            {
                _accepted[key] = list = [];
            }

            list.Add(stream);
        }
    }

    private sealed class Listener(ITransportListener inner, AbortableTransport owner) : ITransportListener
    {
        public PeerAddress LocalAddress => inner.LocalAddress;

        public async ValueTask<ITransportStream> AcceptAsync(CancellationToken cancellationToken = default)
        {
            var stream = await inner.AcceptAsync(cancellationToken).ConfigureAwait(false);
            owner.Track(inner.LocalAddress, stream);
            return stream;
        }

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
