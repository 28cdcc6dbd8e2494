using Petals.Testing.Execution;
using Petals.Client;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;
using Petals.Tensors;
using Petals.Testing.Transport;
using Petals.Tests.Client.Faults;
using Petals.Tests.Generation;

namespace Petals.Tests.Client;

/// <summary>
/// Fault-tolerant sessions (Algorithm 1) over real block servers in a real in-memory DHT: a server that goes away during
/// generation is replaced by servers routed for exactly its blocks, which get the span's input history replayed.
/// </summary>
public sealed class RecoveryTests
{
    private const string ModelId = "random-test-model";
    private static readonly TimeSpan Bound = DiscoverySwarm.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_server_stopped_mid_generation_is_replaced_and_the_tokens_equal_local_generation()
    {
        await using var rig = await Rig.StartAsync(4);
        var (fixture, swarm, servers) = (rig.Fixture, rig.Swarm, rig.Servers);
        await servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero); // one hop: the route chosen first
        await servers.StartAsync(2, new BlockRange(0, 2), TimeSpan.FromMilliseconds(20));
        await servers.StartAsync(3, new BlockRange(2, 4), TimeSpan.FromMilliseconds(20));
        var sequence = await rig.StartSequenceAsync();
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal([swarm.Peers[1].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        var recoveries = new List<SpanRecovery>();
        remote.SpanRecovered += (_, r) => recoveries.Add(r);

        using var remoteModel = new CausalLanguageModel(LanguageModelHead.Load(fixture.Weights), remote, tokenizer: null);
        using var localModel = fixture.CreateModel();
        var options = new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [] };
        int[] prompt = [3, 14, 15, 9, 2];
        var expected = await localModel.GenerateAsync(prompt, options, Ct).ToListAsync(Ct);
        var actual = new List<int>();
        await foreach (var token in remoteModel.GenerateAsync(prompt, options, Ct).WithCancellation(Ct))
        {
            actual.Add(token);
            if (actual.Count == 4)
            {
                await servers.StopAsync(0);
            }
        }

        Assert.Equal(expected, actual);
        var recovery = Assert.Single(recoveries);
        Assert.Equal(1, remote.Recoveries);
        Assert.Equal(new BlockRange(0, 4), recovery.Blocks);
        Assert.Equal(swarm.Peers[1].LocalPeerId, recovery.FailedPeerId);
        Assert.Equal([swarm.Peers[2].LocalPeerId, swarm.Peers[3].LocalPeerId], recovery.Replacements.Select(s => s.PeerId));
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 4)], recovery.Replacements.Select(s => s.Blocks));
        Assert.Equal(prompt.Length + 3, recovery.Position); // the prefill and three decode steps had run
        Assert.Equal(recovery.Position + 1, recovery.ReplayedTokens);
        Assert.Equal(1, recovery.Attempt);
        Assert.True(recovery.ResumedAt >= recovery.DetectedAt && recovery.DetectionToResume > TimeSpan.Zero);
        Assert.Contains(swarm.Peers[1].LocalPeerId, sequence.BannedPeers);

        // New sessions start on the chain the recovery left.
        Assert.Equal([swarm.Peers[2].LocalPeerId, swarm.Peers[3].LocalPeerId], remote.Spans.Select(s => s.PeerId));
    }

    [Fact]
    public async Task Hidden_states_after_a_recovery_equal_those_of_a_failure_free_session()
    {
        await using var rig = await Rig.StartAsync(5);
        var (fixture, swarm, servers) = (rig.Fixture, rig.Swarm, rig.Servers);
        await servers.StartAsync(1, new BlockRange(0, 2), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(2, 4), TimeSpan.Zero);
        await servers.StartAsync(3, new BlockRange(1, 4), TimeSpan.FromMilliseconds(30));
        await servers.StartAsync(4, new BlockRange(0, 3), TimeSpan.FromMilliseconds(30));
        var sequence = await rig.StartSequenceAsync();
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.True(
            remote.Spans.Select(s => s.PeerId).SequenceEqual([swarm.Peers[1].LocalPeerId, swarm.Peers[2].LocalPeerId]),
            "chain: " + string.Join(", ", remote.Spans) + "; rtts: " + string.Join(", ", sequence.MeasuredRtts.Select(r => $"{r.Key[..6]}={r.Value.TotalMilliseconds}")) + "; peers " + string.Join(",", swarm.Peers.Select(p => p.LocalPeerId[..6])));

        var batch = 2;
        var width = fixture.Config.HiddenSize;
        var steps = new[] { 6, 1, 1, 3, 1, 1 };
        var inputs = steps.Select((n, k) => Enumerable.Range(0, batch * n * width).Select(i => (float)Math.Sin((i * 0.37) + k)).ToArray()).ToArray();
        var seen = new List<SpanRecovery>();
        remote.SpanRecovered += (_, r) => seen.Add(r);
        var reference = await RunAsync(remote, batch, inputs, steps, failAfter: -1, () => Task.CompletedTask);
        Assert.True(seen.Count == 0, string.Join(" | ", seen));

        // A replayed prefill runs the same positions through multi-row kernels, so values may differ from the incremental
        // steps in the last bits (about 1e-8 here); the tolerance is far below anything that changes a token.
        // The second span's server goes away after step 2: 1:4 or 0:3 + ... take over blocks 2:4 with a replay.
        var recovered = await RunAsync(remote, batch, inputs, steps, failAfter: 2, () => servers.StopAsync(1));
        Assert.Equal(1, remote.Recoveries);
        for (var k = 0; k < steps.Length; k++)
        {
            for (var i = 0; i < reference[k].Length; i++)
            {
                Assert.True(Math.Abs(reference[k][i] - recovered[k][i]) <= 1e-5f, $"step {k} value {i}: {reference[k][i]} vs {recovered[k][i]}");
            }
        }

        // Closed sessions are freed on every server still running (the close is one-way: wait for it, bounded).
        var deadline = DateTime.UtcNow + Bound;
        while (new[] { 0, 2, 3 }.Any(i => servers.Running[i].GetStatistics().ActiveSessions != 0))
        {
            Assert.True(DateTime.UtcNow < deadline, "a server still holds a session of the closed sessions");
            await Task.Delay(10, Ct);
        }

        Assert.DoesNotContain(swarm.Peers[2].LocalPeerId, remote.Spans.Select(s => s.PeerId));
    }

    [Fact]
    public async Task A_slow_but_live_server_is_not_taken_for_dead_by_the_liveness_check()
    {
        // Each step takes 4 liveness timeouts of compute; the server's read loop answers the pings meanwhile.
        await using var rig = await Rig.StartAsync(3);
        var (fixture, swarm, servers) = (rig.Fixture, rig.Swarm, rig.Servers);
        await servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero, wrap: e => new FaultyBlockExecutor(e) { PassDelay = TimeSpan.FromMilliseconds(800) });
        await servers.StartAsync(2, new BlockRange(0, 4), TimeSpan.FromMilliseconds(100));
        var sequence = await rig.StartSequenceAsync();
        var options = new RemoteSequenceOptions { LivenessTimeout = TimeSpan.FromMilliseconds(200) };
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, options, Ct).WaitAsync(Bound, Ct);
        Assert.Equal([swarm.Peers[1].LocalPeerId], remote.Spans.Select(s => s.PeerId));

        await using var session = await remote.OpenSessionAsync(1, 8, Ct);
        await session.ForwardAsync(new float[2 * fixture.Config.HiddenSize], 2, Ct).AsTask().WaitAsync(Bound, Ct);
        await session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(0, remote.Recoveries);
        Assert.Equal(2, servers.Running[0].GetStatistics().InferenceSteps);
        Assert.Empty(sequence.BannedPeers);
    }

    [Fact]
    public async Task A_replacement_on_the_same_server_as_its_neighbor_is_joined_with_it_into_one_segment()
    {
        // Server 1 (0:4) is slow per block, server 2 (2:4) fast: the route is 0:2 on server 1 and 2:4 on server 2. When
        // server 2 goes away, its blocks go to server 1 too; joined, the chain is one segment again (one hop per token).
        await using var rig = await Rig.StartAsync(3);
        await rig.Servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero, throughput: 1);
        await rig.Servers.StartAsync(2, new BlockRange(2, 4), TimeSpan.Zero, throughput: 1000);
        var sequence = await rig.StartSequenceAsync();
        var (one, two) = (rig.Swarm.Peers[1].LocalPeerId, rig.Swarm.Peers[2].LocalPeerId);
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(rig.Swarm.Transport, sequence, rig.Fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal([(one, new BlockRange(0, 2)), (two, new BlockRange(2, 4))], remote.Spans.Select(s => (s.PeerId, s.Blocks)));
        var recoveries = new List<SpanRecovery>();
        remote.SpanRecovered += (_, r) => recoveries.Add(r);

        int[] steps = [3, 1, 1, 1];
        var width = rig.Fixture.Config.HiddenSize;
        var inputs = steps.Select((n, k) => Enumerable.Range(0, n * width).Select(i => (float)Math.Sin((i * 0.71) + k)).ToArray()).ToArray();
        using var local = rig.Fixture.CreateBlocks();
        await using var reference = await local.OpenSessionAsync(1, 16, Ct);
        await using var session = await remote.OpenSessionAsync(1, 16, Ct);
        for (var k = 0; k < steps.Length; k++)
        {
            if (k == 2)
            {
                await rig.Servers.StopAsync(1);
            }

            var (expected, actual) = (inputs[k].ToArray(), inputs[k].ToArray());
            await reference.ForwardAsync(expected, steps[k], Ct);
            await session.ForwardAsync(actual, steps[k], Ct).AsTask().WaitAsync(Bound, Ct);
            for (var i = 0; i < expected.Length; i++)
            {
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5f, $"step {k} value {i}: {expected[i]} vs {actual[i]}");
            }
        }

        var recovery = Assert.Single(recoveries);
        Assert.Equal((two, new BlockRange(2, 4)), (recovery.FailedPeerId, recovery.Blocks));
        Assert.Equal([(one, new BlockRange(2, 4))], recovery.Replacements.Select(s => (s.PeerId, s.Blocks)));
        Assert.Equal([(one, new BlockRange(0, 4))], remote.Spans.Select(s => (s.PeerId, s.Blocks)));
        var probe = new SessionProbe(session);
        Assert.Equal([(one, new BlockRange(0, 4))], probe.CurrentSpans.Select(s => (s.PeerId, s.Blocks)));

        // Server 1 holds one session now: the 0:2 one was closed when it was joined.
        var deadline = DateTime.UtcNow + Bound;
        while (rig.Servers.Running[0].GetStatistics().ActiveSessions != 1)
        {
            Assert.True(DateTime.UtcNow < deadline, $"server 1 holds {rig.Servers.Running[0].GetStatistics().ActiveSessions} sessions");
            await Task.Delay(10, Ct);
        }
    }

    [Fact]
    public async Task A_server_whose_connection_broke_is_reconnected_when_it_is_its_own_only_replacement()
    {
        // Server 1 alone serves 0:2. Its client connection is aborted: the next step fails on the send, possibly before the
        // read loop saw the abort. The recovery can only pick server 1 again and must not be handed the broken connection.
        await using var rig = await Rig.StartAsync(3);
        await rig.Servers.StartAsync(1, new BlockRange(0, 2), TimeSpan.Zero);
        await rig.Servers.StartAsync(2, new BlockRange(2, 4), TimeSpan.Zero);
        var sequence = await rig.StartSequenceAsync();
        var client = rig.Swarm.Transport.WithShaping(new NetworkShapingOptions());
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(client, sequence, rig.Fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        var recoveries = new List<SpanRecovery>();
        remote.SpanRecovered += (_, r) => recoveries.Add(r);
        await using var session = await remote.OpenSessionAsync(1, 16, Ct);
        var width = rig.Fixture.Config.HiddenSize;
        var refreshes = sequence.RefreshCount;
        for (var step = 0; step < 6; step++)
        {
            if (step % 2 == 1)
            {
                Assert.Equal(1, client.AbortStreams(rig.Servers.Addresses[0], "test: connection broken"));
            }

            await session.ForwardAsync(new float[width], 1, Ct).AsTask().WaitAsync(Bound, Ct);
        }

        Assert.Equal(3, recoveries.Count);
        Assert.Equal(refreshes, sequence.RefreshCount); // a block's only server is retried at once, without reading the swarm
        Assert.All(recoveries, r => Assert.Equal((1, rig.Swarm.Peers[1].LocalPeerId), (r.Attempt, r.FailedPeerId)));
        Assert.All(recoveries, r => Assert.Equal(rig.Swarm.Peers[1].LocalPeerId, Assert.Single(r.Replacements).PeerId));
    }

    [Fact]
    public async Task A_connection_that_broke_leaves_the_pool_at_once_and_one_that_only_carried_an_error_stays()
    {
        await using var rig = await Rig.StartAsync(2);
        await rig.Servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero);
        var sequence = await rig.StartSequenceAsync();
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(rig.Swarm.Transport, sequence, rig.Fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        var pool = remote.Pool;
        var connection = await pool.AcquireAsync(Assert.Single(sequence.OnlineServers), new BlockRange(0, 4), Ct);
        Assert.True(pool.Pools(connection));

        // An error answer: the connection is fine and stays.
        pool.Retire(connection, new ProtocolException(ProtocolErrorCode.Internal, "test: the step failed") { IsRemoteError = true });
        Assert.True(pool.Pools(connection));
        Assert.Same(connection, await pool.AcquireAsync(Assert.Single(sequence.OnlineServers), new BlockRange(0, 4), Ct));

        // A send that failed on a broken stream, seen before the read loop noticed: out of the pool and aborted.
        pool.Retire(connection, new TransportException(TransportErrorKind.Aborted, "test: stream aborted locally"));
        Assert.False(pool.Pools(connection));
        var deadline = DateTime.UtcNow + Bound;
        while (!connection.IsFailed)
        {
            Assert.True(DateTime.UtcNow < deadline, "the retired connection was not aborted");
            await Task.Delay(5, Ct);
        }
    }

    [Fact]
    public async Task A_replacement_announced_after_the_view_was_read_is_found_once_the_failed_server_does_not_answer_again()
    {
        await using var rig = await Rig.StartAsync(3);
        await rig.Servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero);
        var sequence = await rig.StartSequenceAsync(); // the next background refresh is 30 s away
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(rig.Swarm.Transport, sequence, rig.Fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        var recoveries = new List<SpanRecovery>();
        remote.SpanRecovered += (_, r) => recoveries.Add(r);
        await using var session = await remote.OpenSessionAsync(1, 16, Ct);
        var width = rig.Fixture.Config.HiddenSize;
        await session.ForwardAsync(new float[2 * width], 2, Ct).AsTask().WaitAsync(Bound, Ct);

        // Server 2 appears, unseen by the client's view; server 1 stops (its announcement stays): the step's first try
        // goes back to server 1 (the only one in view), which refuses; the second reads the swarm and finds server 2.
        await rig.Servers.StartAsync(2, new BlockRange(0, 4), TimeSpan.Zero);
        Assert.Single(sequence.OnlineServers);
        await rig.Servers.StopAsync(0);
        await session.ForwardAsync(new float[width], 1, Ct).AsTask().WaitAsync(Bound, Ct);

        var recovery = Assert.Single(recoveries);
        Assert.Equal(rig.Swarm.Peers[1].LocalPeerId, recovery.FailedPeerId);
        Assert.Equal([rig.Swarm.Peers[2].LocalPeerId], recovery.Replacements.Select(r => r.PeerId));
        Assert.Equal(3, recovery.ReplayedTokens);
    }

    [Fact]
    public async Task Connecting_reads_the_swarm_again_when_the_view_has_no_route()
    {
        await using var rig = await Rig.StartAsync(2);
        var sequence = await rig.StartSequenceAsync(); // reads an empty swarm; the next background refresh is 30 s away
        Assert.Empty(sequence.OnlineServers);
        await rig.Servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero);

        await using var remote = await RemoteTransformerBlocks.ConnectAsync(rig.Swarm.Transport, sequence, rig.Fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal([rig.Swarm.Peers[1].LocalPeerId], remote.Spans.Select(s => s.PeerId));
    }

    [Fact]
    public async Task A_session_is_routed_for_its_cache_need_and_avoids_a_server_whose_free_cache_cannot_hold_it()
    {
        await using var rig = await Rig.StartAsync(3);
        var (fixture, swarm, servers) = (rig.Fixture, rig.Swarm, rig.Servers);
        await servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(0, 4), TimeSpan.FromMilliseconds(60));
        var sequence = await rig.StartSequenceAsync();
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal([swarm.Peers[1].LocalPeerId], remote.Spans.Select(s => s.PeerId)); // the fast one, as any session fits

        // Server 1 now announces room for 100 tokens only: a session of 2 x 64 goes to server 2 despite its latency.
        await swarm.AnnounceAsync(ModelId, 4, swarm.Info(1, new BlockRange(0, 4), address: servers.Addresses[0]) with { CacheTokensLeft = 100 }, ct: Ct);
        await sequence.RefreshAsync(Ct).WaitAsync(Bound, Ct);
        await using (var small = await remote.OpenSessionAsync(1, 64, Ct))
        {
            Assert.Equal([swarm.Peers[1].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        }

        await using var big = await remote.OpenSessionAsync(2, 64, Ct);
        Assert.Equal([swarm.Peers[2].LocalPeerId], remote.Spans.Select(s => s.PeerId));
        await big.ForwardAsync(new float[2 * 3 * fixture.Config.HiddenSize], 3, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(1, servers.Running[1].GetStatistics().ActiveSessions);
        Assert.Equal(0, servers.Running[0].GetStatistics().SessionsOpened);
    }

    [Fact]
    public async Task Stateless_forward_calls_are_routed_again_when_a_server_fails()
    {
        await using var rig = await Rig.StartAsync(3);
        var (fixture, swarm, servers) = (rig.Fixture, rig.Swarm, rig.Servers);
        await servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(0, 4), TimeSpan.Zero);
        var sequence = await rig.StartSequenceAsync();
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        using var local = fixture.CreateBlocks();
        var input = Enumerable.Range(0, 3 * fixture.Config.HiddenSize).Select(i => (float)Math.Cos(i)).ToArray();
        var expected = input.ToArray();
        await using (var localSession = await local.OpenSessionAsync(1, 3, Ct))
        {
            await localSession.ForwardAsync(expected, 3, Ct); // a prefill of positions 0..2: what a stateless forward computes
        }

        await servers.StopAsync(0);
        for (var call = 0; call < 6; call++)
        {
            var actual = input.ToArray();
            await remote.ForwardAsync(actual, 1, 3, Ct).AsTask().WaitAsync(Bound, Ct);
            for (var i = 0; i < expected.Length; i++)
            {
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5f, $"call {call} value {i}: {expected[i]} vs {actual[i]}");
            }
        }

        Assert.True(servers.Running[1].GetStatistics().ForwardCalls >= 6);
    }

    [Fact]
    public async Task When_no_server_is_left_for_the_failed_blocks_the_step_fails_naming_every_attempt()
    {
        await using var rig = await Rig.StartAsync(3);
        var (fixture, swarm, servers) = (rig.Fixture, rig.Swarm, rig.Servers);
        await servers.StartAsync(1, new BlockRange(0, 2), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(2, 4), TimeSpan.Zero);
        var sequence = await rig.StartSequenceAsync();
        var options = new RemoteSequenceOptions { MaxRecoveryAttempts = 2, RecoveryBackoff = TimeSpan.FromMilliseconds(1) };
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, sequence, fixture.Config, options, Ct).WaitAsync(Bound, Ct);
        await using var session = await remote.OpenSessionAsync(1, 16, Ct);
        var hidden = new float[2 * fixture.Config.HiddenSize];
        await session.ForwardAsync(hidden, 2, Ct);

        await servers.StopAsync(1);
        var error = await Assert.ThrowsAsync<RemoteChainException>(() => session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Contains("MaxRecoveryAttempts is 2", error.Message, StringComparison.Ordinal);
        Assert.Contains($"server {swarm.Peers[2].LocalPeerId[..8]}", error.Message, StringComparison.Ordinal);
        Assert.Contains("(blocks 2:4)", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, remote.Recoveries);
        await Assert.ThrowsAsync<InvalidOperationException>(() => session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct).AsTask());
    }

    private static async Task<float[][]> RunAsync(RemoteTransformerBlocks remote, int batch, float[][] inputs, int[] steps, int failAfter, Func<Task> fail)
    {
        var outputs = new float[steps.Length][];
        await using var session = await remote.OpenSessionAsync(batch, 32, Ct);
        for (var k = 0; k < steps.Length; k++)
        {
            if (k == failAfter)
            {
                await fail();
            }

            outputs[k] = inputs[k].ToArray();
            await session.ForwardAsync(outputs[k], steps[k], Ct).AsTask().WaitAsync(Bound, Ct);
        }

        return outputs;
    }

    /// <summary>A random 4-block model, a DHT of <c>peers</c> nodes and its block servers (started by each test), and a sequence manager.</summary>
    private sealed class Rig : IAsyncDisposable
    {
        private SwarmSequenceManager? _sequence;

        private Rig(DiscoverySwarm swarm)
        {
            Swarm = swarm;
            Servers = new ShapedServers(swarm, Fixture.Weights, Fixture.Config.NumLayers, ModelId);
        }

        public RandomModelFixture Fixture { get; } = new(TensorDType.F32, tied: false, layers: 4);

        public DiscoverySwarm Swarm { get; }

        public ShapedServers Servers { get; }

        public static async Task<Rig> StartAsync(int peers) => new(await DiscoverySwarm.StartAsync(peers, TimeProvider.System, Ct));

        /// <summary>A sequence manager of the model, started (call once the servers are announced).</summary>
        public async Task<SwarmSequenceManager> StartSequenceAsync()
        {
            _sequence = new SwarmSequenceManager(Swarm.Client, ModelId, 4);
            await _sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
            return _sequence;
        }

        public async ValueTask DisposeAsync()
        {
            if (_sequence is not null)
            {
                await _sequence.DisposeAsync();
            }

            await Servers.DisposeAsync();
            await Swarm.DisposeAsync();
            Fixture.Dispose();
        }
    }
}
