using Petals.Models;
using Petals.Tests.Generation;

namespace Petals.Tests.Inference;

/// <summary>The conformance suite on local blocks split over two executors.</summary>
public sealed class LocalTransformerBlocksConformanceTests : TransformerBlocksConformanceTests
{
    private protected override Task<BlocksUnderTest> CreateAsync(RandomModelFixture fixture)
    {
        var blocks = fixture.CreateBlocks(new BlockRange(0, 2), new BlockRange(2, 4));
        return Task.FromResult(new BlocksUnderTest(blocks, new SyncDisposer(blocks)));
    }

    private sealed class SyncDisposer(IDisposable inner) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            inner.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
