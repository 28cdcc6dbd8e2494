using Petals.Models;
using Petals.Testing.Transport;
using Petals.Tests.Generation;
using Petals.Tests.Inference;

namespace Petals.Tests.Client;

/// <summary>The conformance suite on a chain of three servers given by address (in-memory transport).</summary>
public sealed class FixedChainConformanceTests : TransformerBlocksConformanceTests
{
    private protected override async Task<BlocksUnderTest> CreateAsync(RandomModelFixture fixture)
    {
        var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new BlockRange(0, 1), new BlockRange(1, 3), new BlockRange(3, 4)]);
        var remote = await swarm.ConnectAsync();
        return new BlocksUnderTest(remote, remote, swarm);
    }
}
