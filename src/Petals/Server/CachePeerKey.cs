using Petals.Transport;

namespace Petals.Server;

/// <summary>
/// Who a connection's cache reservations are charged to for <see cref="BlockServerOptions.MaxCacheShare"/>: the one
/// place that turns a client into a "peer key", so that every connection of one client shares one share.
/// </summary>
/// <remarks>
/// Today the key is the remote address's host without its port (<c>tcp://10.0.0.7:51234</c> → <c>10.0.0.7</c>,
/// <c>tcp://[::1]:5</c> → <c>::1</c>), so a client cannot multiply its share by opening more connections; a location
/// that is not <c>host:port</c> (the in-memory transport's <c>client-N</c>) is the key as it is. The seam for an
/// authenticated transport: once a connection carries a verified peer identity (TLS pinned to the peer's key), that
/// identity should become the key instead (<c>id:&lt;peer id&gt;</c>) — change <see cref="Of"/> only. Clients behind one
/// NAT share a share; that is the price of not trusting self-claimed ids.
/// </remarks>
internal static class CachePeerKey
{
    /// <summary>The key of reservations made without a peer (direct use of the budget).</summary>
    public const string Anonymous = "";

    /// <summary>The key of the client at <paramref name="remote"/>.</summary>
    /// <param name="remote">The remote address of the client's connection (<see cref="ITransportStream.RemoteAddress"/>).</param>
    /// <returns>The peer key; <see cref="Anonymous"/> for an empty address.</returns>
    public static string Of(PeerAddress remote)
    {
        if (remote.IsEmpty)
        {
            return Anonymous;
        }

        try
        {
            return remote.Host;
        }
        catch (FormatException)
        {
            return remote.Location;
        }
    }
}
