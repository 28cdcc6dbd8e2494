using Petals.Client;
using Petals.Discovery;
using Petals.Execution;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Server;
using Petals.Tensors;
using Petals.Testing;
using Petals.Tests.Generation;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>Connecting through discovery: real block servers announced in a real in-memory DHT, found by the sequence manager.</summary>
public sealed class SwarmConnectTests
{
    private const string ModelId = "random-test-model";
    private static readonly TimeSpan Bound = DiscoverySwarm.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Greedy_generation_through_discovered_servers_equals_local_generation()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: true, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(4, TimeProvider.System, Ct);
        await using var servers = new Servers(swarm);
        await servers.StartAsync(fixture.Weights, ModelId, fixture.Config.NumLayers, (1, new(0, 1)), (2, new(1, 3)), (3, new(3, 4)));
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, fixture.Config.NumLayers);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);

        Assert.Equal([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId, swarm.Peers[3].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        await AssertGeneratesAsLocallyAsync(fixture, remote);
    }

    [Fact]
    public async Task A_dead_announced_server_is_excluded_and_the_next_chain_is_used()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(4, TimeProvider.System, Ct);
        await using var servers = new Servers(swarm);
        await servers.StartAsync(fixture.Weights, ModelId, fixture.Config.NumLayers, (1, new(0, 2)), (2, new(2, 4)));

        // The fastest chain by far, but nothing listens there (a server that died without saying so).
        var dead = swarm.Info(3, new BlockRange(0, 4), throughput: 1e6, address: PeerAddress.Parse($"mem://dead-{Guid.NewGuid():N}"));
        await swarm.AnnounceAsync(ModelId, 4, dead, ct: Ct);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Equal([dead.PeerId], sequence.RouteInference(1, 0).Select(s => s.Server.PeerId));

        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 4)], remote.Spans.Select(s => s.Blocks));

        using var local = fixture.CreateBlocks();
        var input = Enumerable.Range(0, 3 * fixture.Config.HiddenSize).Select(i => (float)Math.Sin(i)).ToArray();
        var theirs = input.ToArray();
        var ours = input.ToArray();
        await using (var session = await remote.OpenSessionAsync(1, 8, Ct))
        {
            await session.ForwardAsync(theirs, 3, Ct);
        }

        await using (var session = await local.OpenSessionAsync(1, 8, Ct))
        {
            await session.ForwardAsync(ours, 3, Ct);
        }

        for (var i = 0; i < ours.Length; i++)
        {
            Assert.True(Math.Abs(ours[i] - theirs[i]) <= 1e-5f, $"value {i}: {ours[i]} vs {theirs[i]}");
        }
    }

    [Fact]
    public async Task A_server_whose_handshake_is_not_the_announced_peer_is_refused_and_every_attempt_is_listed()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct);
        await using var servers = new Servers(swarm);

        // Peer 1's announcement points at a server that calls itself "impostor".
        await servers.StartAsync(fixture.Weights, ModelId, 2, wirePeerId: "impostor", (1, new(0, 2)));
        var dead = swarm.Info(2, new BlockRange(0, 2), throughput: 1, address: PeerAddress.Parse($"mem://dead-{Guid.NewGuid():N}"));
        await swarm.AnnounceAsync(ModelId, 2, dead, ct: Ct);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 2);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);

        var error = await Assert.ThrowsAsync<RemoteChainException>(() => RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct));
        Assert.StartsWith($"No chain is left after excluding the servers that failed: no online server covers blocks 0:2 of model {ModelId}", error.Message, StringComparison.Ordinal);
        Assert.Contains($"attempt 1: server {swarm.Peers[1].LocalPeerId[..8]}… at {servers.Addresses[0]} (blocks 0:2): the server at {servers.Addresses[0]} is announced as peer {swarm.Peers[1].LocalPeerId} but its handshake says 'impostor'", error.Message, StringComparison.Ordinal);
        Assert.Contains($"attempt 2: server {dead.PeerId[..8]}… at {dead.Address} (blocks 0:2): ", error.Message, StringComparison.Ordinal);
        Assert.All(servers.Running, s => Assert.Equal(0, s.GetStatistics().InferenceSteps + s.GetStatistics().ForwardCalls));
    }

    [Fact]
    public async Task Attempts_stop_at_the_configured_bound_with_an_error_listing_each()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await DiscoverySwarm.StartAsync(5, TimeProvider.System, Ct);
        for (var peer = 1; peer <= 4; peer++)
        {
            await swarm.AnnounceAsync(ModelId, 2, swarm.Info(peer, new BlockRange(0, 2), throughput: peer * 10, address: PeerAddress.Parse($"mem://dead-{peer}-{Guid.NewGuid():N}")), ct: Ct);
        }

        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 2, new SwarmSequenceOptions { MaxChainAttempts = 3 });
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        var error = await Assert.ThrowsAsync<RemoteChainException>(() => RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct));
        Assert.StartsWith($"Every chain of model {ModelId} tried failed (3 attempts).", error.Message, StringComparison.Ordinal);

        // The fastest first: peers 4, 3, 2; peer 1 was never tried.
        Assert.Contains($"attempt 1: server {swarm.Peers[4].LocalPeerId[..8]}…", error.Message, StringComparison.Ordinal);
        Assert.Contains($"attempt 2: server {swarm.Peers[3].LocalPeerId[..8]}…", error.Message, StringComparison.Ordinal);
        Assert.Contains($"attempt 3: server {swarm.Peers[2].LocalPeerId[..8]}…", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(swarm.Peers[1].LocalPeerId[..8], error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Announced_servers_given_as_a_static_discovery_are_routed_as_segments_and_generate_exactly_as_locally()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: true, layers: 5);
        await using var swarm = await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct);
        await using var servers = new Servers(swarm);
        await servers.StartAsync(fixture.Weights, ModelId, fixture.Config.NumLayers, (1, new(0, 3)), (2, new(2, 5)));
        var first = swarm.Info(1, new BlockRange(0, 3), address: servers.Addresses[0]);
        var second = swarm.Info(2, new BlockRange(2, 5), address: servers.Addresses[1]);

        await using var sequence = new SwarmSequenceManager(new StaticPeerDiscovery(ModelId, 5, [first, second]), ModelId, 5);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        var split = remote.Spans[0].Blocks.End;
        Assert.True(split is 2 or 3, $"the route splits at block {split}");
        Assert.Equal([new BlockRange(0, split), new BlockRange(split, 5)], remote.Spans.Select(s => s.Blocks));
        Assert.Equal([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        await AssertGeneratesAsLocallyAsync(fixture, remote);
    }

    [Fact]
    public async Task A_server_is_checked_against_its_announced_span_before_it_is_used()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct);
        await using var servers = new Servers(swarm);
        await servers.StartAsync(fixture.Weights, ModelId, 4, (1, new(0, 2)), (2, new(2, 4)));

        // Server 1 is announced with more blocks than it serves: the one-hop route through it is refused on connecting,
        // and without it no route is left.
        var lying = swarm.Info(1, new BlockRange(0, 4), address: servers.Addresses[0]);
        var honest = swarm.Info(2, new BlockRange(2, 4), address: servers.Addresses[1]);
        await using (var sequence = new SwarmSequenceManager(new StaticPeerDiscovery(ModelId, 4, [lying, honest]), ModelId, 4))
        {
            await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
            var error = await Assert.ThrowsAsync<RemoteChainException>(() => RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct));
            Assert.Contains("is announced with blocks 0:4 but serves 0:2", error.Message, StringComparison.Ordinal);
            Assert.Contains(lying.PeerId, sequence.BannedPeers);
        }

        await using var corrected = new SwarmSequenceManager(new StaticPeerDiscovery(ModelId, 4, [lying with { Span = new BlockRange(0, 2) }, honest]), ModelId, 4);
        await corrected.StartAsync(Ct).WaitAsync(Bound, Ct);
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, corrected, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 4)], remote.Spans.Select(s => s.Blocks));
    }

    [Fact]
    public async Task RemoteModel_connects_the_real_tiny_model_through_discovery_and_generates_as_locally()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var path = TestData.Stories260KGguf;
        using var weights = ModelLoader.Open(path);
        var modelId = ModelIdentity.Compute(path, weights.Config);
        await using var swarm = await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct);
        await using var servers = new Servers(swarm);
        await servers.StartAsync(weights, modelId, weights.Config.NumLayers, (1, new(0, 2)), (2, new(2, weights.Config.NumLayers)));

        using var remote = await RemoteModel.ConnectAsync(path, swarm.Transport, swarm.Client, cancellationToken: Ct).WaitAsync(Bound, Ct);
        var blocks = Assert.IsType<RemoteTransformerBlocks>(remote.Blocks);
        Assert.Equal([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId], blocks.Spans.Select(s => s.PeerId));

        var localBlocks = new LocalTransformerBlocks([RandomModelFixture.Factory.Create(weights, new BlockRange(0, weights.Config.NumLayers))]);
        using var local = new CausalLanguageModel(LanguageModelHead.Load(weights), localBlocks, tokenizer: null, localBlocks);
        var options = new GenerationOptions { MaxNewTokens = 16 };
        var prompt = remote.EncodePrompt("Once upon a time");
        Assert.Equal(
            await local.GenerateAsync(prompt, options, Ct).ToListAsync(Ct),
            await remote.GenerateAsync(prompt, options, Ct).ToListAsync(Ct));
    }

    /// <summary>Block servers announced through the swarm's peers: server i runs its span as DHT peer i.</summary>
    /// <summary>Greedy generation through <paramref name="remote"/> gives the tokens of the fixture's local model.</summary>
    private static async Task AssertGeneratesAsLocallyAsync(RandomModelFixture fixture, RemoteTransformerBlocks remote)
    {
        using var remoteModel = new CausalLanguageModel(LanguageModelHead.Load(fixture.Weights), remote, tokenizer: null);
        using var localModel = fixture.CreateModel();
        var options = new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [] };
        int[] prompt = [1, 17, 42, 5];
        var expected = await localModel.GenerateAsync(prompt, options, Ct).ToListAsync(Ct);
        var actual = await remoteModel.GenerateAsync(prompt, options, Ct).ToListAsync(Ct);
        Assert.Equal(expected, actual);
    }

    private sealed class Servers(DiscoverySwarm swarm) : IAsyncDisposable
    {
        private readonly List<ITransportListener> _listeners = [];
        private readonly List<IBlockExecutor> _executors = [];

        public List<BlockServer> Running { get; } = [];

        public List<PeerAddress> Addresses { get; } = [];

        public Task StartAsync(IModelWeights weights, string modelId, int blockCount, params (int Peer, BlockRange Span)[] spans) =>
            StartAsync(weights, modelId, blockCount, null, spans);

        public async Task StartAsync(IModelWeights weights, string modelId, int blockCount, string? wirePeerId, params (int Peer, BlockRange Span)[] spans)
        {
            foreach (var (peer, span) in spans)
            {
                var executor = RandomModelFixture.Factory.Create(weights, span);
                _executors.Add(executor);
                var server = new BlockServer(executor, new BlockServerOptions { Blocks = span, ModelId = modelId, PeerId = wirePeerId ?? swarm.Peers[peer].LocalPeerId });
                var listener = await swarm.Transport.ListenAsync(PeerAddress.Parse($"mem://block-server-{peer}-{Guid.NewGuid():N}"), Ct);
                _listeners.Add(listener);
                await server.StartAsync(listener, Ct);
                Running.Add(server);
                Addresses.Add(listener.LocalAddress);
                await swarm.AnnounceAsync(modelId, blockCount, swarm.Info(peer, span, address: listener.LocalAddress), ct: Ct);
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var server in Running)
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
        }
    }
}
