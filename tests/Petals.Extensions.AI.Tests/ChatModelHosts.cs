using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Discovery;
using Petals.Execution;
using Petals.Formats;
using Petals.Generation;
using Petals.Models;
using Petals.Server;
using Petals.Testing;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Extensions.AI.Tests;

/// <summary>
/// The shared stories260K model, its blocks somewhere (this process, servers over TCP, a swarm found through a DHT), seen
/// through <see cref="CountingTransformerBlocks"/>; with the arguments that make <c>petals generate</c> use the same blocks.
/// </summary>
public abstract class ChatModelHost : IAsyncLifetime
{
    internal static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private CausalLanguageModel? _model;

    /// <summary>The model the chat clients run on (blocks counted).</summary>
    public CausalLanguageModel Model => _model ?? throw new InvalidOperationException("The host is not started.");

    internal CountingTransformerBlocks Counter => (CountingTransformerBlocks)Model.Blocks;

    /// <summary>The block servers (none for a local model).</summary>
    public List<BlockServer> Servers { get; } = [];

    /// <summary>What `petals generate` needs besides --model to run on the same blocks.</summary>
    public abstract string[] CliArguments { get; }

    public async ValueTask InitializeAsync()
    {
        if (!TestData.SharedAvailable)
        {
            return;
        }

        var inner = await ConnectAsync();
        _model = new CausalLanguageModel(inner.Head, new CountingTransformerBlocks(inner.Blocks), inner.Tokenizer, inner)
        {
            ModelId = inner.ModelId,
            ChatTemplate = inner.ChatTemplate,
        };
    }

    /// <summary>Waits (bounded) until no server holds an inference session.</summary>
    public async Task WaitForNoServerSessionsAsync()
    {
        var deadline = DateTime.UtcNow + Bound;
        while (Servers.Any(s => s.GetStatistics().ActiveSessions != 0))
        {
            Assert.True(DateTime.UtcNow < deadline, "a server still holds a session " + Bound + " later");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
    }

    protected abstract Task<CausalLanguageModel> ConnectAsync();

    public async ValueTask DisposeAsync()
    {
        _model?.Dispose();
        await DisposeHostAsync();
        GC.SuppressFinalize(this);
    }

    protected virtual ValueTask DisposeHostAsync() => ValueTask.CompletedTask;
}

/// <summary>All blocks in this process.</summary>
public sealed class LocalHost : ChatModelHost
{
    public override string[] CliArguments => [];

    protected override Task<CausalLanguageModel> ConnectAsync() =>
        Task.FromResult(CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 })));
}

/// <summary>Two real block servers (0:2, 2:5) over TCP on 127.0.0.1, named by address.</summary>
public sealed class FixedPeerHost : ChatModelHost
{
    private readonly ServerSet _servers = new();

    public override string[] CliArguments =>
        ["--peers", string.Join(',', _servers.Addresses), "--insecure", "--verify-rate", "0"];

    protected override async Task<CausalLanguageModel> ConnectAsync()
    {
        await _servers.StartAsync([new(0, 2), new(2, 5)], announcers: null);
        Servers.AddRange(_servers.Servers);
        return await RemoteModel.ConnectAsync(TestData.Stories260KGguf, ServerSet.Transport, _servers.Addresses, cancellationToken: TestContext.Current.CancellationToken);
    }

    protected override async ValueTask DisposeHostAsync()
    {
        await _servers.DisposeAsync();
    }
}

/// <summary>A bootstrap DHT node and two block servers (0:2, 2:5) each announcing through its own DHT node, all over TCP on 127.0.0.1.</summary>
public sealed class SwarmHost : ChatModelHost
{
    private readonly ServerSet _servers = new();
    private readonly List<DhtNode> _nodes = [];
    private readonly List<PeerIdentity> _identities = [];
    private DhtNode? _client;
    private PeerAddress _bootstrap;

    public override string[] CliArguments => ["--initial-peers", _bootstrap.ToString(), "--insecure", "--verify-rate", "0"];

    protected override async Task<CausalLanguageModel> ConnectAsync()
    {
        var bootstrap = await StartNodeAsync(null);
        _bootstrap = bootstrap.LocalAddress;
        var announcers = new List<DhtPeerDiscovery>();
        for (var i = 0; i < 2; i++)
        {
            announcers.Add(new DhtPeerDiscovery(await StartNodeAsync(_bootstrap)));
        }

        await _servers.StartAsync([new(0, 2), new(2, 5)], announcers);
        Servers.AddRange(_servers.Servers);
        _client = await StartNodeAsync(_bootstrap);
        return await RemoteModel.ConnectAsync(TestData.Stories260KGguf, ServerSet.Transport, new DhtPeerDiscovery(_client), cancellationToken: TestContext.Current.CancellationToken);
    }

    protected override async ValueTask DisposeHostAsync()
    {
        await _servers.DisposeAsync();
        foreach (var node in _nodes)
        {
            await node.DisposeAsync().AsTask().WaitAsync(Bound);
        }

        foreach (var identity in _identities)
        {
            identity.Dispose();
        }
    }

    private async Task<DhtNode> StartNodeAsync(PeerAddress? bootstrap)
    {
        var identity = PeerIdentity.Generate();
        _identities.Add(identity);
        var node = new DhtNode(identity);
        _nodes.Add(node);
        var ct = TestContext.Current.CancellationToken;
        await node.StartAsync(ServerSet.Transport, PeerAddress.Parse("tcp://127.0.0.1:0"), ct).WaitAsync(Bound, ct);
        if (bootstrap is { } address)
        {
            Assert.Equal(1, await node.BootstrapAsync([address], ct).WaitAsync(Bound, ct));
        }

        return node;
    }
}

/// <summary>Block servers of the shared model on plain TCP (multiplexed, as the CLI's --insecure), optionally announced in a DHT.</summary>
internal sealed class ServerSet : IAsyncDisposable
{
    private readonly List<ITransportListener> _listeners = [];
    private readonly List<IBlockExecutor> _executors = [];
    private IModelWeights? _weights;

    public static ITransport Transport { get; } = new TcpTransport().WithMultiplexing();

    public List<BlockServer> Servers { get; } = [];

    public List<PeerAddress> Addresses { get; } = [];

    public async Task StartAsync(BlockRange[] spans, IReadOnlyList<DhtPeerDiscovery>? announcers, int maxSessionLength = 2048)
    {
        var ct = TestContext.Current.CancellationToken;
        _weights = ModelLoader.Open(TestData.Stories260KGguf);
        var modelId = ModelIdentity.Compute(TestData.Stories260KGguf, _weights.Config);
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 });
        for (var i = 0; i < spans.Length; i++)
        {
            var executor = factory.Create(_weights, spans[i]);
            _executors.Add(executor);
            var peerId = announcers is null ? $"server-{i}" : announcers[i].LocalPeerId;
            var server = new BlockServer(executor, new BlockServerOptions { Blocks = spans[i], ModelId = modelId, PeerId = peerId, MaxSessionLength = maxSessionLength });
            var listener = await Transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), ct);
            _listeners.Add(listener);
            await server.StartAsync(listener, ct);
            Servers.Add(server);
            Addresses.Add(listener.LocalAddress);
            if (announcers is not null)
            {
                var info = new ServerInfo
                {
                    PeerId = peerId,
                    Address = listener.LocalAddress,
                    State = ServerState.Online,
                    Span = spans[i],
                    Throughput = 250,
                    CacheTokensLeft = 4096,
                    Version = "chat-test",
                    PublicName = $"server-{i}",
                };
                var stored = await announcers[i].AnnounceAsync(modelId, _weights.Config.NumLayers, info, TimeSpan.FromMinutes(5), ct).WaitAsync(ChatModelHost.Bound, ct);
                Assert.Equal(spans[i].Count, stored);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var server in Servers)
        {
            await server.DisposeAsync();
        }

        foreach (var listener in _listeners)
        {
            await listener.DisposeAsync();
        }

        foreach (var executor in _executors)
        {
            executor.Dispose();
        }

        _weights?.Dispose();
    }
}
