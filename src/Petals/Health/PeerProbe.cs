using Petals.Discovery;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Health;

/// <summary>
/// The one way a peer measures a server's round trip: connect with the wire protocol, check that the handshake's peer
/// id is the announced one, time one ping, close. Used by the client's ping rounds and by a server's announcer (round
/// trips to the servers of its next block).
/// </summary>
internal static class PeerProbe
{
    /// <summary>Probes <paramref name="server"/> once.</summary>
    /// <param name="transport">The transport to reach it with.</param>
    /// <param name="server">The server as announced (address and peer id).</param>
    /// <param name="local">This side's preamble (peer id, model id).</param>
    /// <param name="cancellationToken">Bounds the whole probe (a dead server never answers).</param>
    /// <returns>The ping's round-trip time.</returns>
    /// <exception cref="PeerProbeException">The server introduced itself with another peer id than announced.</exception>
    /// <exception cref="TransportException">The server cannot be reached or the connection broke.</exception>
    /// <exception cref="ProtocolException">The handshake failed (another model or protocol version).</exception>
    public static async Task<TimeSpan> ProbeAsync(ITransport transport, ServerInfo server, ConnectionPreamble local, CancellationToken cancellationToken)
    {
        var connection = await ProtocolConnection.ConnectAsync(transport, server.Address, local, null, cancellationToken).ConfigureAwait(false);
        Task? run = null;
        try
        {
            if (!string.Equals(connection.Remote.PeerId, server.PeerId, StringComparison.Ordinal))
            {
                throw new PeerProbeException($"the server at {server.Address} introduced itself as '{connection.Remote.PeerId}', not as the announced '{server.PeerId}'");
            }

            run = connection.RunAsync(IgnoringMessageHandler.Instance, cancellationToken);
            return await connection.PingAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            if (run is not null)
            {
                try
                {
                    await run.ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or TransportException or ProtocolException or ObjectDisposedException)
                {
                    // The read loop ends with the connection just closed.
                }
            }
        }
    }
}
