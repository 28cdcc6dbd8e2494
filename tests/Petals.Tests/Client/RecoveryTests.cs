using Petals.Client;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Tensors;
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
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(4, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero); // one hop: the route chosen first
        await servers.StartAsync(2, new BlockRange(0, 2), TimeSpan.FromMilliseconds(20));
        await servers.StartAsync(3, new BlockRange(2, 4), TimeSpan.FromMilliseconds(20));
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
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
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(5, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 2), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(2, 4), TimeSpan.Zero);
        await servers.StartAsync(3, new BlockRange(1, 4), TimeSpan.FromMilliseconds(30));
        await servers.StartAsync(4, new BlockRange(0, 3), TimeSpan.FromMilliseconds(30));
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
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
    public async Task Stateless_forward_calls_are_routed_again_when_a_server_fails()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 4), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(0, 4), TimeSpan.Zero);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
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
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await DiscoverySwarm.StartAsync(3, TimeProvider.System, Ct);
        await using var servers = new ShapedServers(swarm, fixture.Weights, fixture.Config.NumLayers, ModelId);
        await servers.StartAsync(1, new BlockRange(0, 2), TimeSpan.Zero);
        await servers.StartAsync(2, new BlockRange(2, 4), TimeSpan.Zero);
        await using var sequence = new SwarmSequenceManager(swarm.Client, ModelId, 4);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
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
}
