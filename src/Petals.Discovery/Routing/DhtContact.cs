using Petals.Transport;

namespace Petals.Discovery;

/// <summary>A DHT node as the routing table knows it: its id and where it can be reached. Immutable.</summary>
/// <param name="Id">The node's id (the hash of its public key).</param>
/// <param name="Address">Where the node listens, e.g. <c>tcp://10.0.0.5:31337</c> or <c>mem://dht-7</c>.</param>
public sealed record DhtContact(NodeId Id, PeerAddress Address)
{
    /// <summary>The id and address, e.g. <c>3f2a…@tcp://10.0.0.5:31337</c>.</summary>
    public override string ToString() => $"{Id}@{Address}";
}
