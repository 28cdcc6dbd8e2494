using Microsoft.Extensions.DependencyInjection;
using Petals.Discovery;
using Petals.Execution;
using Petals.Models;
using Petals.Transport;

namespace Petals.Hosting.Abstractions.Tests;

/// <summary>Minimal components and builders: the pipeline only composes them, it never runs them.</summary>
internal sealed class TestServerBuilder(IServiceCollection services) : IPetalsServerBuilder
{
    public IServiceCollection Services { get; } = services;
}

internal sealed class TestClientBuilder(IServiceCollection services) : IPetalsClientBuilder
{
    public IServiceCollection Services { get; } = services;
}

/// <summary>A transport that names itself and refuses every operation.</summary>
internal sealed class NamedTransport(string name) : ITransport
{
    public string Name => name;

    public ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default) =>
        throw new TransportException(TransportErrorKind.ConnectionRefused, $"{name} connects nowhere");

    public ValueTask<ITransportListener> ListenAsync(PeerAddress bindAddress, CancellationToken cancellationToken = default) =>
        throw new TransportException(TransportErrorKind.ConnectionRefused, $"{name} listens nowhere");

    public object? GetService(Type serviceType, object? serviceKey = null) => serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;
}

/// <summary>A transport decorator that names its layer: the name of a pipeline reads outermost first.</summary>
internal sealed class LayerTransport(ITransport inner, string layer) : DelegatingTransport(inner)
{
    public string Layer => layer;

    public override string Name => $"{layer}({base.Name})";
}

/// <summary>An executor of a span that records its forwards (it computes nothing).</summary>
internal sealed class StubExecutor(BlockRange blocks) : IBlockExecutor
{
    public List<string> Log { get; } = [];

    public bool Disposed { get; private set; }

    public ModelConfig Config { get; } = new() { HiddenSize = 4, IntermediateSize = 8, NumLayers = 4, NumHeads = 1, NumKeyValueHeads = 1, HeadDim = 4, VocabSize = 8 };

    public BlockRange Blocks => blocks;

    public IKvCache CreateCache(int batchSize, int maxLength) => throw new NotSupportedException();

    public void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache) => Log.Add("forward");

    public object? GetService(Type serviceType, object? serviceKey = null) => serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;

    public void Dispose() => Disposed = true;
}

internal sealed class StubExecutorFactory : IBlockExecutorFactory
{
    public List<StubExecutor> Created { get; } = [];

    public string Name => "stub";

    public IBlockExecutor Create(IModelWeights weights, BlockRange blocks)
    {
        var executor = new StubExecutor(blocks);
        Created.Add(executor);
        return executor;
    }
}

/// <summary>An executor decorator that writes its layer into the inner executor's log before forwarding.</summary>
internal sealed class LayerExecutor(IBlockExecutor inner, string layer, List<string> log) : DelegatingBlockExecutor(inner)
{
    public override void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache)
    {
        log.Add(layer);
        base.Forward(hidden, batchSize, tokenCount, cache);
    }
}

internal sealed class StaticDiscovery(string peerId) : IPeerDiscovery
{
    public string LocalPeerId => peerId;

    public Task<int> AnnounceAsync(string modelId, int blockCount, ServerInfo info, TimeSpan timeToLive, CancellationToken cancellationToken = default) => Task.FromResult(0);

    public Task<IReadOnlyList<BlockServers>> GetServersAsync(string modelId, BlockRange blocks, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<BlockServers>>([]);

    public Task<IReadOnlyList<SwarmModelInfo>> GetModelsAsync(CancellationToken cancellationToken = default) => Task.FromResult<IReadOnlyList<SwarmModelInfo>>([]);
}

internal sealed class RenamingDiscovery(IPeerDiscovery inner, string suffix) : DelegatingPeerDiscovery(inner)
{
    public override string LocalPeerId => base.LocalPeerId + suffix;
}
