using Petals.Client;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Tensors;
using Petals.Tests.Generation;
using Petals.Tests.Server;

namespace Petals.Tests.Client;

/// <summary>
/// A server that refuses a session for lack of cache (its client's share is taken: <c>cache_busy</c>; or the wait
/// timed out: <c>cache_exhausted</c>) is routed around: the client's recovery puts the span on another server, over
/// two real block servers in a real in-memory DHT.
/// </summary>
public sealed class CacheFairnessRoutingTests
{
    private const string ModelId = "random-test-model";
    private static readonly TimeSpan Bound = DiscoverySwarm.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_session_over_the_clients_share_gets_cache_busy_and_lands_on_the_other_server()
    {
        await using var rig = await Rig.StartAsync(new BlockServerOptions { CacheTokens = 128, MaxSessionLength = 64, MaxCacheShare = 0.5 });
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(rig.Swarm.Transport, rig.Sequence, rig.Fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        var recoveries = new List<SpanRecovery>();
        remote.SpanRecovered += (_, r) => recoveries.Add(r);

        // The first session takes this client's whole share of the fast server.
        await using var first = await remote.OpenSessionAsync(1, 64, Ct);
        await first.ForwardAsync(rig.Input(1, 1), 1, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal([rig.Swarm.Peers[1].LocalPeerId], remote.Spans.Select(s => s.PeerId));

        // The second is routed to the fast server too, refused at once with cache_busy, and recovered on the other one.
        await using var second = await remote.OpenSessionAsync(1, 64, Ct);
        var hidden = rig.Input(1, 2);
        await second.ForwardAsync(hidden, 2, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(rig.Local(rig.Input(1, 2), 1, 64), hidden);

        var recovery = Assert.Single(recoveries);
        Assert.Equal(rig.Swarm.Peers[1].LocalPeerId, recovery.FailedPeerId);
        Assert.Equal([rig.Swarm.Peers[2].LocalPeerId], recovery.Replacements.Select(s => s.PeerId));
        var fast = rig.Servers.Running[0].GetStatistics();
        Assert.Equal(1, fast.CacheRefusedOverShare);
        Assert.Equal(1, fast.ActiveSessions);
        Assert.Equal(1, rig.Servers.Running[1].GetStatistics().ActiveSessions);
    }

    [Fact]
    public async Task A_server_saturated_by_greedy_peers_makes_a_new_session_wait_then_land_on_the_other_server()
    {
        await using var rig = await Rig.StartAsync(new BlockServerOptions
        {
            CacheTokens = 128,
            MaxSessionLength = 64,
            MaxCacheShare = 0.5,
            CacheWaitTimeout = TimeSpan.FromMilliseconds(300),
        });

        // Two greedy peers (two client hosts) each hold their share of the fast server: it is full.
        var fast = rig.Servers.Running[0];
        await using var greedyA = await TestClient.ConnectAsync(rig.Swarm.Transport, rig.Servers.Addresses[0], ModelId);
        await using var greedyB = await TestClient.ConnectAsync(rig.Swarm.Transport, rig.Servers.Addresses[0], ModelId);
        foreach (var greedy in new[] { greedyA, greedyB })
        {
            for (var s = 0; s < 2; s++)
            {
                var stream = greedy.Connection.NewStreamId();
                await greedy.Connection.SendAsync(stream, new InferenceOpen(Guid.NewGuid(), new BlockRange(0, 4), 32, WireCodec.Fp32), Ct);
                var step = new InferenceStep(1, 0, WireTensor.FromValues(new TensorShape(1, 1, rig.Fixture.Config.HiddenSize), rig.Input(1, 1)));
                await greedy.Connection.SendAsync(stream, step, Ct);
                Assert.IsType<InferenceStepResult>((await greedy.NextAsync(stream)).Message);
            }
        }

        Assert.Equal(0, fast.CacheTokensLeft);
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(rig.Swarm.Transport, rig.Sequence, rig.Fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        var recoveries = new List<SpanRecovery>();
        remote.SpanRecovered += (_, r) => recoveries.Add(r);
        await using var session = await remote.OpenSessionAsync(1, 16, Ct);
        Assert.Equal([rig.Swarm.Peers[1].LocalPeerId], remote.Spans.Select(s => s.PeerId)); // routed to the fast one first
        var hidden = rig.Input(1, 3);
        await session.ForwardAsync(hidden, 3, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(rig.Local(rig.Input(1, 3), 1, 16), hidden);

        var recovery = Assert.Single(recoveries);
        Assert.Equal(rig.Swarm.Peers[1].LocalPeerId, recovery.FailedPeerId);
        Assert.Equal([rig.Swarm.Peers[2].LocalPeerId], recovery.Replacements.Select(s => s.PeerId));
        Assert.Equal(1, fast.GetStatistics().CacheRefusedTimedOut);
        Assert.Equal(4, fast.GetStatistics().ActiveSessions); // the greedy peers' sessions are untouched
        Assert.Contains(rig.Swarm.Peers[1].LocalPeerId, rig.Sequence.BannedPeers);
    }

    /// <summary>A random 4-block model; a fast server (peer 1) and a slower one (peer 2), each serving all blocks, announced in a DHT of 3 nodes.</summary>
    private sealed class Rig : IAsyncDisposable
    {
        private readonly Execution.IBlockExecutor _reference;

        private Rig(DiscoverySwarm swarm)
        {
            Swarm = swarm;
            Servers = new ShapedServers(swarm, Fixture.Weights, Fixture.Config.NumLayers, ModelId);
            _reference = RandomModelFixture.Factory.Create(Fixture.Weights, new BlockRange(0, 4));
        }

        public RandomModelFixture Fixture { get; } = new(TensorDType.F32, tied: false, layers: 4);

        public DiscoverySwarm Swarm { get; }

        public ShapedServers Servers { get; }

        public SwarmSequenceManager Sequence { get; private set; } = null!;

        public static async Task<Rig> StartAsync(BlockServerOptions options)
        {
            var rig = new Rig(await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct));
            await rig.Servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero, options.Clone());
            await rig.Servers.StartAsync(2, new BlockRange(0, 4), TimeSpan.FromMilliseconds(40), options.Clone());
            rig.Sequence = new SwarmSequenceManager(rig.Swarm.Client, ModelId, 4);
            await rig.Sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
            return rig;
        }

        public float[] Input(int batch, int tokens)
        {
            var values = new float[batch * tokens * Fixture.Config.HiddenSize];
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = MathF.Cos((i + 1) * 0.07f) * 0.5f;
            }

            return values;
        }

        /// <summary>What a fresh session of <paramref name="batch"/> rows and <paramref name="maxLength"/> positions computes locally for a first step of <paramref name="values"/>.</summary>
        public float[] Local(float[] values, int batch, int maxLength)
        {
            using var cache = _reference.CreateCache(batch, maxLength);
            _reference.Forward(values, batch, values.Length / batch / Fixture.Config.HiddenSize, cache);
            return values;
        }

        public async ValueTask DisposeAsync()
        {
            await Sequence.DisposeAsync();
            await Servers.DisposeAsync();
            await Swarm.DisposeAsync();
            _reference.Dispose();
            Fixture.Dispose();
        }
    }
}
