using Petals.Discovery.Tests.Network;
using Petals.Testing.Conformance;
using Petals.Testing.Time;

namespace Petals.Discovery.Tests.Announcements;

/// <summary>
/// <see cref="DhtPeerDiscovery"/> against the <see cref="IPeerDiscovery"/> conformance suite: each peer is a node of a
/// DHT on the in-memory transport, with nodes that are no peer in between, so that every read goes over the network.
/// </summary>
public sealed class DhtPeerDiscoveryConformanceTests : PeerDiscoveryConformanceTests
{
    protected override async ValueTask<PeerDiscoveryUnderTest> CreateSwarmAsync(int peerCount, ManualTimeProvider clock)
    {
        var network = new DhtTestNetwork(time: clock);
        try
        {
            // Every other node is a peer; the rest only route and store.
            await network.BuildAsync(Math.Max(10, (2 * peerCount) + 2), new Random(peerCount), TestContext.Current.CancellationToken);
            var peers = Enumerable.Range(0, peerCount).Select(i => (IPeerDiscovery)new DhtPeerDiscovery(network.Nodes[(2 * i) + 1], clock)).ToArray();
            return new PeerDiscoveryUnderTest(peers, network.DisposeAsync);
        }
        catch
        {
            await network.DisposeAsync();
            throw;
        }
    }
}
