using System.CommandLine;
using System.Globalization;
using Petals.Discovery;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Cli.Commands;

/// <summary>
/// The DHT node of <c>petals dht</c> and <c>petals serve</c>: identity option, start and bootstrap over TLS, or TCP with
/// <c>--insecure</c> (the
/// <c>--initial-peers</c> option and its parsing are <see cref="ClientDiscovery"/>'s, shared with the client commands).
/// </summary>
internal static class DhtNodeStarter
{
    public static Option<string?> Identity() =>
        new("--identity") { Description = "Key file of this peer's identity (a P-256 key, created if missing): its DHT node id and the TLS certificate clients pin are both made from it, so its id, and so its address, stay stable across runs. Default: a fresh key per run." };

    /// <summary>Loads or creates the identity (<paramref name="path"/>), or makes a fresh one when it is null.</summary>
    public static PeerIdentity LoadIdentity(string? path) => path is null ? PeerIdentity.Generate() : PeerIdentity.LoadOrCreate(path);

    /// <summary>The address a DHT node is joined through: its listen address with its node id, <c>tls://&lt;id&gt;@host:port</c> (the TLS key's id starts with it).</summary>
    public static PeerAddress AddressOf(DhtNode node) => node.LocalAddress.WithPeerId(node.Id.ToString());

    /// <summary>How many times <see cref="JoinAsync"/> asks the initial peers when every one of them timed out.</summary>
    public const int JoinAttempts = 3;

    /// <summary>
    /// Joins through <paramref name="peers"/>; when none answered and every one timed out, asks again, up to
    /// <see cref="JoinAttempts"/> times in all: a process's first TLS handshakes (its own and the peer's) load and compile
    /// the TLS stack, which on a loaded machine can take longer than the DHT's request timeout. Refusals and wrong
    /// identities are final at once.
    /// </summary>
    public static async Task<DhtJoinResult> JoinAsync(DhtNode node, IReadOnlyList<PeerAddress> peers, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var joined = await node.JoinAsync(peers, cancellationToken).ConfigureAwait(false);
            if (joined.Answered > 0 || attempt >= JoinAttempts
                || !joined.Failures.All(f => f.Failure!.StartsWith("timed out", StringComparison.Ordinal)))
            {
                return joined;
            }
        }
    }

    /// <summary>
    /// Starts <paramref name="node"/> at <paramref name="host"/>:<paramref name="port"/>, over TLS with
    /// <paramref name="tls"/> (made from the node's key) or plain TCP when it is null, multiplexed unless <paramref name="multiplex"/> is false, and bootstraps it from
    /// <paramref name="peers"/> (none: a new swarm). Returns null when started, or the error line when no peer answered;
    /// <paramref name="met"/> gets a line for each peer given without an id, naming the key it proved.
    /// </summary>
    public static async Task<string?> StartAsync(DhtNode node, TlsPeerIdentity? tls, bool multiplex, string host, int port, IReadOnlyList<PeerAddress> peers, Action<string> met, CancellationToken cancellationToken)
    {
        if (port is < 0 or > 65535)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"The DHT port must be between 0 and 65535, not {port}."));
        }

        var scheme = tls is null ? TcpTransport.TcpScheme : TcpTransport.TlsScheme;
        await node.StartAsync(TransportSecurity.Transport(tls, multiplex), PeerAddress.FromHostPort(scheme, host, port), cancellationToken).ConfigureAwait(false);
        if (peers.Count == 0)
        {
            return null;
        }

        var joined = await JoinAsync(node, peers, cancellationToken).ConfigureAwait(false);
        foreach (var peer in joined.Peers)
        {
            if (peer.Id is { } id && TransportSecurity.MetLine(peer.Address, id.ToString()) is { } line)
            {
                met(line);
            }
        }

        return joined.Answered > 0
            ? null
            : string.Create(CultureInfo.InvariantCulture, $"none of the initial DHT peers answered within {node.Options.RequestTimeout.TotalSeconds:0.#} s: {string.Join("; ", joined.Failures)}");
    }
}
