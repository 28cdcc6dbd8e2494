using Petals.Client;
using Petals.Models;
using Petals.Tests.Generation;
using Petals.Tests.Inference;

namespace Petals.Tests.Client;

/// <summary>The conformance suite on a chain routed by a sequence manager over servers announced in a real in-memory DHT.</summary>
public sealed class RoutedChainConformanceTests : TransformerBlocksConformanceTests
{
    private const string ModelId = "random-test-model";

    private protected override async Task<BlocksUnderTest> CreateAsync(RandomModelFixture fixture)
    {
        var swarm = await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct);
        var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 2), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(2, 4), TimeSpan.Zero);
        var sequence = new SwarmSequenceManager(swarm.Client, ModelId, fixture.Config.NumLayers);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        return new BlocksUnderTest(remote, remote, sequence, servers, swarm);
    }
}
