using Petals.Discovery;
using Petals.Execution;
using Petals.Models;
using Petals.Transport;

namespace Petals.Abstractions.Tests.Delegating;

/// <summary>The delegating bases forward every member unchanged, answer GetService for themselves first, and own their inner executor.</summary>
public sealed class DelegatingBaseTests
{
    [Fact]
    public void A_delegating_executor_forwards_every_member_including_the_sub_range_ones()
    {
        var inner = new RecordingExecutor();
        using (IBlockExecutor outer = new PassThroughExecutor(inner))
        {
            Assert.Same(inner.Config, outer.Config);
            Assert.Equal(inner.Blocks, outer.Blocks);
            outer.CreateCache(2, 8);
            outer.CreateCache(1, 4, new BlockRange(1, 2));
            outer.Forward(new float[4], 1, 1, null);
            outer.Forward(new float[4], 1, 1, null, new BlockRange(1, 2));
            Assert.Same(outer, outer.GetService(typeof(PassThroughExecutor)));
            Assert.Same(inner, outer.GetService(typeof(RecordingExecutor)));
            Assert.Same(inner, outer.GetService(typeof(RecordingExecutor), serviceKey: null));
            Assert.Null(outer.GetService(typeof(string)));
            Assert.Throws<ArgumentNullException>(() => outer.GetService(null!));
        }

        Assert.Equal(["cache 2x8", "cache 1x4 1:2", "forward 0:3", "forward 1:2", "dispose"], inner.Log);
    }

    [Fact]
    public void Disposing_a_delegating_executor_twice_disposes_the_inner_one_once()
    {
        var inner = new RecordingExecutor();
        var outer = new PassThroughExecutor(inner);
        outer.Dispose();
        outer.Dispose();
        Assert.Equal(["dispose"], inner.Log);
        Assert.Throws<ArgumentNullException>(() => new PassThroughExecutor(null!));
    }

    [Fact]
    public async Task A_delegating_transport_and_discovery_forward_every_member()
    {
        var transport = new PassThroughTransport(new RefusingTransport());
        Assert.Equal("refusing", transport.Name);
        var connect = await Assert.ThrowsAsync<TransportException>(() => transport.ConnectAsync(PeerAddress.Parse("mem://x"), TestContext.Current.CancellationToken).AsTask());
        Assert.Contains("connect mem://x", connect.Message, StringComparison.Ordinal);
        var listen = await Assert.ThrowsAsync<TransportException>(() => transport.ListenAsync(PeerAddress.Parse("mem://y"), TestContext.Current.CancellationToken).AsTask());
        Assert.Contains("listen mem://y", listen.Message, StringComparison.Ordinal);
        Assert.Same(transport, transport.GetService(typeof(PassThroughTransport)));
        Assert.IsType<RefusingTransport>(transport.GetService(typeof(RefusingTransport)));
        Assert.Throws<ArgumentNullException>(() => new PassThroughTransport(null!));

        var discovery = new PassThroughDiscovery(new OneBlockDiscovery());
        Assert.Equal("one", discovery.LocalPeerId);
        Assert.Equal(7, await discovery.AnnounceAsync("m", 1, null!, TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken));
        Assert.Equal(3, Assert.Single(await discovery.GetServersAsync("m", new BlockRange(3, 4), TestContext.Current.CancellationToken)).Block);
        Assert.Equal("m", Assert.Single(await discovery.GetModelsAsync(TestContext.Current.CancellationToken)).ModelId);
        Assert.Throws<ArgumentNullException>(() => new PassThroughDiscovery(null!));
    }

    private sealed class PassThroughExecutor(IBlockExecutor inner) : DelegatingBlockExecutor(inner);

    private sealed class PassThroughTransport(ITransport inner) : DelegatingTransport(inner);

    private sealed class PassThroughDiscovery(IPeerDiscovery inner) : DelegatingPeerDiscovery(inner);

    private sealed class RecordingExecutor : IBlockExecutor
    {
        public List<string> Log { get; } = [];

        public ModelConfig Config { get; } = new() { HiddenSize = 4, IntermediateSize = 8, NumLayers = 3, NumHeads = 1, NumKeyValueHeads = 1, HeadDim = 4, VocabSize = 8 };

        public BlockRange Blocks { get; } = new(0, 3);

        public IKvCache CreateCache(int batchSize, int maxLength)
        {
            Log.Add($"cache {batchSize}x{maxLength}");
            return null!;
        }

        public IKvCache CreateCache(int batchSize, int maxLength, BlockRange blocks)
        {
            Log.Add($"cache {batchSize}x{maxLength} {blocks}");
            return null!;
        }

        public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) => Log.Add($"forward {Blocks}");

        public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache, BlockRange blocks) => Log.Add($"forward {blocks}");

        public object? GetService(Type serviceType, object? serviceKey = null) => serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;

        public void Dispose() => Log.Add("dispose");
    }

    private sealed class RefusingTransport : ITransport
    {
        public string Name => "refusing";

        public ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default) =>
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"connect {address}");

        public ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default) =>
            throw new TransportException(TransportErrorKind.ConnectionRefused, $"listen {bindAddress}");

        public object? GetService(Type serviceType, object? serviceKey = null) => serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;
    }

    private sealed class OneBlockDiscovery : IPeerDiscovery
    {
        public string LocalPeerId => "one";

        public Task<int> AnnounceAsync(string modelId, int blockCount, ServerInfo info, TimeSpan timeToLive, CancellationToken cancellationToken = default) => Task.FromResult(7);

        public Task<IReadOnlyList<BlockServers>> GetServersAsync(string modelId, BlockRange blocks, CancellationToken cancellationToken = default) =>
            Task.FromResult<IReadOnlyList<BlockServers>>([new BlockServers(blocks.Start, [])]);

        public Task<IReadOnlyList<SwarmModelInfo>> GetModelsAsync(CancellationToken cancellationToken = default) =>
            Task.FromResult<IReadOnlyList<SwarmModelInfo>>([new SwarmModelInfo("m", 1, 0)]);
    }
}
