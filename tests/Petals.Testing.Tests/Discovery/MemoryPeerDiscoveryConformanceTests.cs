using Petals.Discovery;
using Petals.Testing.Conformance;
using Petals.Testing.Discovery;
using Petals.Testing.Time;

namespace Petals.Testing.Tests.Discovery;

/// <summary><see cref="MemoryPeerDiscovery"/> against the <see cref="IPeerDiscovery"/> conformance suite.</summary>
public sealed class MemoryPeerDiscoveryConformanceTests : PeerDiscoveryConformanceTests
{
    protected override ValueTask<PeerDiscoveryUnderTest> CreateSwarmAsync(int peerCount, ManualTimeProvider clock)
    {
        var network = new MemoryDiscoveryNetwork(clock);
        var peers = Enumerable.Range(0, peerCount).Select(_ => (IPeerDiscovery)network.CreatePeer()).ToArray();
        return ValueTask.FromResult(new PeerDiscoveryUnderTest(peers));
    }
}
