using System.CommandLine;
using System.Globalization;
using Petals.Discovery;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Cli.Commands;

/// <summary>
/// The DHT node of <c>petals dht</c> and <c>petals serve</c>: identity option, start and bootstrap over TCP (the
/// <c>--initial-peers</c> option and its parsing are <see cref="ClientDiscovery"/>'s, shared with the client commands).
/// </summary>
internal static class DhtNodeStarter
{
    public static Option<string?> Identity() =>
        new("--identity") { Description = "Key file of this node's identity (created if missing); keeps its id, and so its address, stable across runs. Default: a fresh key per run." };

    /// <summary>Loads or creates the identity (<paramref name="path"/>), or makes a fresh one when it is null.</summary>
    public static PeerIdentity LoadIdentity(string? path) => path is null ? PeerIdentity.Generate() : PeerIdentity.LoadOrCreate(path);

    /// <summary>The address a DHT node is joined through: its listen address with its id, <c>tcp://&lt;id&gt;@host:port</c>.</summary>
    public static PeerAddress AddressOf(DhtNode node) => node.LocalAddress.WithPeerId(node.Id.ToString());

    /// <summary>
    /// Starts <paramref name="node"/> on TCP at <paramref name="host"/>:<paramref name="port"/> and bootstraps it from
    /// <paramref name="peers"/> (none: a new swarm). Returns null when started, or the error line when no peer answered.
    /// </summary>
    public static async Task<string?> StartAsync(DhtNode node, string host, int port, IReadOnlyList<PeerAddress> peers, CancellationToken cancellationToken)
    {
        if (port is < 0 or > 65535)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"The DHT port must be between 0 and 65535, not {port}."));
        }

        await node.StartAsync(new TcpTransport(), PeerAddress.FromHostPort(TcpTransport.TcpScheme, host, port), cancellationToken).ConfigureAwait(false);
        if (peers.Count == 0)
        {
            return null;
        }

        var joined = await node.JoinAsync(peers, cancellationToken).ConfigureAwait(false);
        return joined.Answered > 0
            ? null
            : string.Create(CultureInfo.InvariantCulture, $"none of the initial DHT peers answered within {node.Options.RequestTimeout.TotalSeconds:0.#} s: {string.Join("; ", joined.Failures)}");
    }
}
