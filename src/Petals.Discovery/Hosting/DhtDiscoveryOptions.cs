using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// Settings of the DHT node that <c>UseDhtDiscovery(…)</c> starts for a Petals server or client; checked by
/// <see cref="Validate"/> when the builder method runs.
/// </summary>
public sealed class DhtDiscoveryOptions
{
    /// <summary>
    /// Addresses of DHT nodes already in the swarm to bootstrap from, e.g. <c>tcp://3f2a…@10.0.0.5:31337</c> (what
    /// <c>petals dht</c> prints). Exactly one of a non-empty list and <see cref="NewSwarm"/> must be given.
    /// </summary>
    public IList<string> InitialPeers { get; } = [];

    /// <summary>Whether this node starts a new swarm (bootstraps from nobody). Default false.</summary>
    public bool NewSwarm { get; set; }

    /// <summary>Where the DHT node listens, e.g. <c>tcp://0.0.0.0:31337</c>; port 0 picks a free one. Default <c>tcp://127.0.0.1:0</c>. Unused in <see cref="ClientMode"/>.</summary>
    public string ListenAddress { get; set; } = "tcp://127.0.0.1:0";

    /// <summary>
    /// Whether the node runs in client mode: it does not listen, and other nodes answer it without adding it to their
    /// routing tables (see <see cref="DhtNode.IsClientMode"/>). Default true for clients (<c>AddPetalsClient(…).UseDhtDiscovery</c>)
    /// and false for servers, which must be reachable; a server cannot run in client mode.
    /// </summary>
    public bool ClientMode { get; set; }

    /// <summary>
    /// The key file of the node's identity (loaded, or created on first use, with <see cref="PeerIdentity.LoadOrCreate"/>),
    /// which keeps the node's id and so its address stable across restarts. Null (the default) makes a fresh key per run.
    /// </summary>
    public string? IdentityPath { get; set; }

    /// <summary>The DHT node's settings. Default <see cref="DhtNodeOptions.Default"/>.</summary>
    public DhtNodeOptions Node { get; set; } = DhtNodeOptions.Default;

    /// <summary>
    /// The transport the node listens and connects with; null (the default) uses the transport chosen on the same builder
    /// (<c>UseTcpTransport()</c>, …), which must then handle <see cref="ListenAddress"/>'s scheme.
    /// </summary>
    public ITransport? Transport { get; set; }

    /// <summary>Checks every setting.</summary>
    /// <exception cref="ArgumentException">A setting is missing, contradictory or malformed; the message names it.</exception>
    public void Validate()
    {
        if (NewSwarm == (InitialPeers.Count > 0))
        {
            throw new ArgumentException(
                NewSwarm
                    ? $"{nameof(NewSwarm)} starts a swarm without bootstrap peers, but {nameof(InitialPeers)} names {InitialPeers.Count}: give one or the other."
                    : $"Give {nameof(InitialPeers)} (addresses of DHT nodes in the swarm) or set {nameof(NewSwarm)} to start a new swarm.",
                NewSwarm ? nameof(NewSwarm) : nameof(InitialPeers));
        }

        foreach (var peer in InitialPeers)
        {
            if (!PeerAddress.TryParse(peer, out _))
            {
                throw new ArgumentException($"{nameof(InitialPeers)} entry '{peer}' is not a peer address scheme://[id@]host:port.", nameof(InitialPeers));
            }
        }

        if (!PeerAddress.TryParse(ListenAddress, out _))
        {
            throw new ArgumentException($"{nameof(ListenAddress)} '{ListenAddress}' is not a peer address scheme://host:port.", nameof(ListenAddress));
        }

        if (IdentityPath is { Length: 0 })
        {
            throw new ArgumentException($"{nameof(IdentityPath)} is empty: give a file path or null for a fresh key per run.", nameof(IdentityPath));
        }

        ArgumentNullException.ThrowIfNull(Node, nameof(Node));
        Node.Validate();
    }
}
