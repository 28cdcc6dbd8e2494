using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Execution;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Tensors;
using Petals.Testing.Transport;
using Petals.Tests.Generation;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Tests.Client;

/// <summary>The remote client against real block servers (in this process, over the in-memory transport and TCP).</summary>
public sealed class RemoteTransformerBlocksTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_session_through_three_servers_equals_the_local_blocks_step_by_step()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 6);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 2), new(2, 4), new(4, 6)]);
        await using var remote = await swarm.ConnectAsync();
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 4), new BlockRange(4, 6)], remote.Spans.Select(s => s.Blocks));
        using var local = fixture.CreateBlocks();

        await using var remoteSession = await remote.OpenSessionAsync(batchSize: 2, maxLength: 16, Ct);
        await using var localSession = await local.OpenSessionAsync(batchSize: 2, maxLength: 16, Ct);
        var random = new Random(3);
        foreach (var tokens in new[] { 5, 1, 1, 3, 1 })
        {
            var input = RandomHidden(random, 2 * tokens * fixture.Config.HiddenSize);
            var theirs = input.ToArray();
            var ours = input.ToArray();
            await remoteSession.ForwardAsync(theirs, tokens, Ct);
            await localSession.ForwardAsync(ours, tokens, Ct);
            AssertClose(ours, theirs, 1e-5f);
        }

        Assert.Equal(11, remoteSession.Position);
    }

    [Fact]
    public async Task A_decode_step_costs_the_hidden_state_plus_36_bytes_per_message_on_the_wire()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(1, 2)]);
        foreach (var (codec, bytesPerValue) in new[] { (WireCodec.Fp32, 4), (WireCodec.Fp16, 2) })
        {
            await using var remote = await swarm.ConnectAsync(new RemoteSequenceOptions { Codec = codec });
            await using var session = await remote.OpenSessionAsync(1, 8, Ct);
            await session.ForwardAsync(new float[3 * fixture.Config.HiddenSize], 3, Ct);
            var sent = remote.BytesSent;
            var received = remote.BytesReceived;
            await session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct);
            var perMessage = (fixture.Config.HiddenSize * bytesPerValue) + 36;
            Assert.Equal(2 * perMessage, remote.BytesSent - sent);
            Assert.Equal(2 * perMessage, remote.BytesReceived - received);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task A_prefill_larger_than_a_server_takes_is_sent_in_chunks_with_the_same_outputs(int batch)
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 2), new(2, 4)], o => o.MaxBatchTokens = 6);
        await using var remote = await swarm.ConnectAsync();
        using var local = fixture.CreateBlocks();
        await using var remoteSession = await remote.OpenSessionAsync(batch, 32, Ct);
        await using var localSession = await local.OpenSessionAsync(batch, 32, Ct);
        var random = new Random(17);
        foreach (var tokens in new[] { 11, 1, 7 })
        {
            var input = RandomHidden(random, batch * tokens * fixture.Config.HiddenSize);
            var theirs = input.ToArray();
            var ours = input.ToArray();
            await remoteSession.ForwardAsync(theirs, tokens, Ct);
            await localSession.ForwardAsync(ours, tokens, Ct);
            AssertClose(ours, theirs, 1e-5f);
        }

        Assert.Equal(19, remoteSession.Position);
        Assert.True(swarm.Servers[0].GetStatistics().InferenceSteps >= (batch == 1 ? 5 : 8), "the prefill went in several steps");
    }

    [Fact]
    public async Task A_batch_wider_than_a_server_takes_is_refused_at_open()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 2)], o => o.MaxBatchTokens = 4);
        await using var remote = await swarm.ConnectAsync();
        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await remote.OpenSessionAsync(5, 8, Ct));
        Assert.Contains("at most 4 batch x tokens per step", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stateless_forward_through_the_chain_equals_the_local_blocks()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(1, 4)]);
        await using var remote = await swarm.ConnectAsync();
        using var local = fixture.CreateBlocks();
        await AssertStatelessForwardEqualsLocalAsync(remote, local, new Random(5), batch: 3, tokens: 7);
    }

    [Fact]
    public async Task Greedy_generation_through_servers_over_tcp_equals_local_generation()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: true, layers: 4);
        await using var swarm = await Swarm.StartAsync(fixture, new TcpTransport(), [new(0, 1), new(1, 3), new(3, 4)]);
        await using var remote = await swarm.ConnectAsync();
        using var remoteModel = new CausalLanguageModel(LanguageModelHead.Load(fixture.Weights), remote, tokenizer: null);
        using var localModel = fixture.CreateModel();
        var options = new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] };
        int[] prompt = [1, 17, 42, 5];
        var expected = await localModel.GenerateAsync(prompt, options, Ct).ToListAsync(Ct);
        var actual = await remoteModel.GenerateAsync(prompt, options, Ct).ToListAsync(Ct);
        Assert.Equal(expected, actual);
        Assert.True(remote.BytesSent > 0 && remote.BytesReceived > 0);
    }

    [Fact]
    public async Task Half_precision_on_the_wire_stays_close_to_fp32()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(1, 2)]);
        await using var remote = await swarm.ConnectAsync(new RemoteSequenceOptions { Codec = WireCodec.Bf16 });
        using var local = fixture.CreateBlocks();
        var input = RandomHidden(new Random(9), 4 * fixture.Config.HiddenSize);
        var theirs = input.ToArray();
        var ours = input.ToArray();
        await using (var s = await remote.OpenSessionAsync(1, 8, Ct))
        {
            await s.ForwardAsync(theirs, 4, Ct);
        }

        await using (var s = await local.OpenSessionAsync(1, 8, Ct))
        {
            await s.ForwardAsync(ours, 4, Ct);
        }

        // bf16 keeps 8 bits of mantissa: about 2 significant digits per hop.
        AssertClose(ours, theirs, 0.05f, relative: true);
    }

    [Fact]
    public async Task Overlapping_servers_given_by_address_are_routed_as_segments_and_generate_exactly_as_locally()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: true, layers: 5);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 3), new(2, 5)]);
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(
            swarm.Transport, [swarm.Addresses[1], swarm.Addresses[0]], fixture.Config, Swarm.ModelId, cancellationToken: Ct).WaitAsync(Bound, Ct);
        var split = remote.Spans[0].Blocks.End;
        Assert.True(split is 2 or 3, $"the route splits at block {split}");
        Assert.Equal([new BlockRange(0, split), new BlockRange(split, 5)], remote.Spans.Select(s => s.Blocks));
        Assert.Equal([new BlockRange(0, 3), new BlockRange(2, 5)], remote.Spans.Select(s => s.Info.Blocks));

        using var remoteModel = new CausalLanguageModel(LanguageModelHead.Load(fixture.Weights), remote, tokenizer: null);
        using var localModel = fixture.CreateModel();
        var options = new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] };
        int[] prompt = [1, 17, 42, 5];
        var expected = await localModel.GenerateAsync(prompt, options, Ct).ToListAsync(Ct);
        var actual = await remoteModel.GenerateAsync(prompt, options, Ct).ToListAsync(Ct);
        Assert.Equal(expected, actual);

        // The hidden states too, step by step and stateless: the second server runs only blocks 3 and 4.
        using var local = fixture.CreateBlocks();
        await using (var remoteSession = await remote.OpenSessionAsync(batchSize: 2, maxLength: 10, Ct))
        await using (var localSession = await local.OpenSessionAsync(batchSize: 2, maxLength: 10, Ct))
        {
            var random = new Random(23);
            foreach (var tokens in new[] { 4, 1, 1 })
            {
                var input = RandomHidden(random, 2 * tokens * fixture.Config.HiddenSize);
                var theirs = input.ToArray();
                var ours = input.ToArray();
                await remoteSession.ForwardAsync(theirs, tokens, Ct);
                await localSession.ForwardAsync(ours, tokens, Ct);
                AssertClose(ours, theirs, 1e-5f);
            }

            // Each server's session caches only its segment's blocks of its 3: ceil(2 x 10 x blocks / 3) tokens (14 for 2).
            Assert.Equal(swarm.Servers[1].Options.CacheTokens - (((20 * (5 - split)) + 2) / 3), swarm.Servers[1].CacheTokensLeft);
            Assert.Equal(swarm.Servers[0].Options.CacheTokens - (((20 * split) + 2) / 3), swarm.Servers[0].CacheTokensLeft);
        }

        await AssertStatelessForwardEqualsLocalAsync(remote, local, new Random(4), batch: 1, tokens: 3);
    }

    [Fact]
    public async Task A_gap_between_servers_is_refused_before_any_tensor_is_sent()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(2, 4)]);
        var error = await Assert.ThrowsAsync<RemoteChainException>(() => swarm.ConnectAsync());
        Assert.Contains("no server covers blocks 1:2", error.Message, StringComparison.Ordinal);
        Assert.All(swarm.Servers, s => Assert.Equal(0, s.GetStatistics().InferenceSteps + s.GetStatistics().ForwardCalls));
    }

    [Fact]
    public async Task Missing_last_blocks_are_refused_with_the_spans_named_even_when_servers_overlap()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 4);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 2), new(1, 3)]);
        var error = await Assert.ThrowsAsync<RemoteChainException>(() => swarm.ConnectAsync());
        Assert.Contains("no server covers blocks 3:4", error.Message, StringComparison.Ordinal);
        Assert.Contains("= 1:3", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_that_refuses_the_codec_is_refused()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 2)], o => o.Codecs = WireCodecs.Fp32);
        var error = await Assert.ThrowsAsync<RemoteChainException>(() => swarm.ConnectAsync(new RemoteSequenceOptions { Codec = WireCodec.Fp16 }));
        Assert.Contains("does not accept hidden states as Fp16", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_of_another_model_fails_the_handshake()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 2)]);
        var error = await Assert.ThrowsAsync<ProtocolException>(() => RemoteTransformerBlocks.ConnectAsync(swarm.Transport, swarm.Addresses, fixture.Config, "another-model", cancellationToken: Ct));
        Assert.Equal(ProtocolErrorCode.ModelMismatch, error.Code);
    }

    [Fact]
    public async Task A_server_with_another_hidden_size_is_refused()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 2)]);
        var wider = fixture.Config with { HiddenSize = fixture.Config.HiddenSize * 2 };
        var error = await Assert.ThrowsAsync<RemoteChainException>(() => RemoteTransformerBlocks.ConnectAsync(swarm.Transport, swarm.Addresses, wider, Swarm.ModelId, cancellationToken: Ct));
        Assert.Contains("has hidden size 48, the model has 96", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unreachable_server_fails_connecting_with_its_address()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        var error = await Assert.ThrowsAsync<TransportException>(() => RemoteTransformerBlocks.ConnectAsync(new MemoryTransport(), [PeerAddress.Parse("mem://nobody")], fixture.Config, Swarm.ModelId, cancellationToken: Ct));
        Assert.Contains("mem://nobody", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_session_over_the_cache_budget_gets_cache_full_naming_the_server_without_recovery()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(1, 2)], o =>
        {
            o.CacheTokens = 64;
            o.CacheWaitTimeout = TimeSpan.FromMilliseconds(200);
        });
        await using var remote = await swarm.ConnectAsync(FailFast());
        await using var session = await remote.OpenSessionAsync(batchSize: 1, maxLength: 100, Ct);
        var hidden = new float[fixture.Config.HiddenSize];
        var error = await Assert.ThrowsAsync<ProtocolException>(async () => await session.ForwardAsync(hidden, 1, Ct));
        Assert.Equal(ProtocolErrorCode.CacheExhausted, error.Code);
        Assert.Contains("server", error.Message, StringComparison.Ordinal);

        // The failed session is unusable; a smaller one works.
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await session.ForwardAsync(hidden, 1, Ct));
        await using var small = await remote.OpenSessionAsync(batchSize: 1, maxLength: 32, Ct);
        await small.ForwardAsync(hidden, 1, Ct);
        Assert.Equal(1, small.Position);
    }

    [Fact]
    public async Task A_server_that_stops_mid_session_fails_the_next_step_naming_it_without_recovery()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(1, 2)]);
        await using var remote = await swarm.ConnectAsync(FailFast());
        await using var session = await remote.OpenSessionAsync(1, 8, Ct);
        var hidden = new float[fixture.Config.HiddenSize];
        await session.ForwardAsync(hidden, 1, Ct);
        await swarm.Servers[1].StopAsync(Ct).WaitAsync(Bound, Ct);
        var error = await Assert.ThrowsAnyAsync<Exception>(async () => await session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.True(error is ProtocolException or TransportException, error.ToString());
        Assert.Contains("server-1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_session_the_server_ended_between_steps_fails_the_next_step_with_the_servers_reason_without_recovery()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(1, 2)], o => o.SessionIdleTimeout = TimeSpan.FromSeconds(1));
        await using var remote = await swarm.ConnectAsync(FailFast());
        await using var session = await remote.OpenSessionAsync(1, 8, Ct);
        await session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct);

        // The client pauses longer than the idle timeout: both servers end the session and say why on its stream.
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (swarm.Servers.Any(s => s.ActiveSessions > 0))
        {
            Assert.True(deadline.Elapsed < Bound, "the idle sessions were not ended");
            await Task.Delay(20, Ct);
        }

        var error = await Assert.ThrowsAsync<ProtocolException>(async () => await session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(BlockServerErrors.SessionTimeout, error.Code);
        Assert.Contains("server-0", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_that_stopped_between_steps_fails_the_next_step_with_shutting_down_without_recovery()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(1, 2)]);
        await using var remote = await swarm.ConnectAsync(FailFast());
        await using var session = await remote.OpenSessionAsync(1, 8, Ct);
        await session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct);
        await swarm.Servers[0].StopAsync(Ct).WaitAsync(Bound, Ct);

        // Let the client take in what the server sent before it closed (the error, then the end of the stream).
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (remote.BytesReceived < swarm.Servers.Sum(s => s.GetStatistics().BytesSent))
        {
            Assert.True(deadline.Elapsed < Bound, "the client did not receive what the servers sent");
            await Task.Delay(10, Ct);
        }

        await Task.Delay(1000, Ct);

        // The server told the session why before it closed the connection: that reason (retry elsewhere) wins.
        var error = await Assert.ThrowsAsync<ProtocolException>(async () => await session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(BlockServerErrors.ShuttingDown, error.Code);
        Assert.Contains("server-0", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Closing_sessions_returns_every_cache_token_to_the_servers()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(1, 2)]);
        await using var remote = await swarm.ConnectAsync();
        var full = swarm.Servers.Select(s => s.CacheTokensLeft).ToArray();
        var sessions = new List<ITransformerSession>();
        for (var i = 0; i < 4; i++)
        {
            var session = await remote.OpenSessionAsync(1, 16, Ct);
            await session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct);
            sessions.Add(session);
        }

        Assert.All(swarm.Servers.Zip(full), p => Assert.Equal(p.Second - 64, p.First.CacheTokensLeft));
        foreach (var session in sessions)
        {
            await session.DisposeAsync();
        }

        var deadline = DateTime.UtcNow + Bound;
        while (swarm.Servers.Zip(full).Any(p => p.First.CacheTokensLeft != p.Second) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10, Ct);
        }

        Assert.Equal(full, swarm.Servers.Select(s => s.CacheTokensLeft).ToArray());
    }

    [Fact]
    public async Task A_server_that_stops_answering_times_out_within_the_request_timeout_and_breaks_the_session_without_recovery()
    {
        var transport = new MemoryTransport();
        await using var silent = await SilentServer.StartAsync(transport, hiddenSize: 8, blocks: 2);
        var config = new ModelConfig { HiddenSize = 8, IntermediateSize = 16, NumLayers = 2, NumHeads = 1, NumKeyValueHeads = 1, HeadDim = 8, VocabSize = 10 };
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(transport, [silent.Address], config, Swarm.ModelId, new RemoteSequenceOptions { RequestTimeout = TimeSpan.FromMilliseconds(300), MaxRecoveryAttempts = 0 }, Ct);
        await using var session = await remote.OpenSessionAsync(1, 4, Ct);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<TimeoutException>(async () => await session.ForwardAsync(new float[8], 1, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Contains("silent", error.Message, StringComparison.Ordinal);
        Assert.Contains("did not answer within 0.3 s", error.Message, StringComparison.Ordinal);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(20), $"timed out after {started.Elapsed}");
        var broken = await Assert.ThrowsAsync<InvalidOperationException>(async () => await session.ForwardAsync(new float[8], 1, Ct));
        Assert.Contains("open a new session", broken.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_request_to_a_server_that_stopped_reading_fails_within_the_request_timeout_instead_of_hanging_in_its_send()
    {
        // A small transport buffer and a server that stops reading after the first call: a large request stalls in its send.
        var transport = new MemoryTransport(bufferBytes: 16 * 1024);
        await using var silent = await SilentServer.StartAsync(transport, hiddenSize: 8, blocks: 2, frozen: true);
        var config = new ModelConfig { HiddenSize = 8, IntermediateSize = 16, NumLayers = 2, NumHeads = 1, NumKeyValueHeads = 1, HeadDim = 8, VocabSize = 10 };
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(transport, [silent.Address], config, Swarm.ModelId, new RemoteSequenceOptions { RequestTimeout = TimeSpan.FromMilliseconds(500), MaxRecoveryAttempts = 0 }, Ct);
        var first = remote.ForwardAsync(new float[8], 1, 1, Ct).AsTask();
        await silent.Frozen.WaitAsync(Bound, Ct);
        var large = remote.ForwardAsync(new float[8 * 250_000], 1, 250_000, Ct).AsTask();
        await Assert.ThrowsAsync<TimeoutException>(() => first.WaitAsync(Bound, Ct));
        Assert.Same(large, await Task.WhenAny(large, Task.Delay(TimeSpan.FromSeconds(30), Ct)));
        var error = await Assert.ThrowsAsync<TransportException>(() => large);
        Assert.Contains("silent", error.Message, StringComparison.Ordinal);
        Assert.Contains("did not read", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Canceling_a_step_that_waits_ends_it_with_cancellation()
    {
        var transport = new MemoryTransport();
        await using var silent = await SilentServer.StartAsync(transport, hiddenSize: 8, blocks: 2);
        var config = new ModelConfig { HiddenSize = 8, IntermediateSize = 16, NumLayers = 2, NumHeads = 1, NumKeyValueHeads = 1, HeadDim = 8, VocabSize = 10 };
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(transport, [silent.Address], config, Swarm.ModelId, cancellationToken: Ct);
        await using var session = await remote.OpenSessionAsync(1, 4, Ct);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cancel.CancelAfter(200);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await session.ForwardAsync(new float[8], 1, cancel.Token).AsTask().WaitAsync(Bound, Ct));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await session.ForwardAsync(new float[8], 1, Ct));
    }

    [Fact]
    public async Task A_session_the_servers_ended_between_steps_is_replayed_on_the_same_servers_by_default()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        await using var swarm = await Swarm.StartAsync(fixture, new MemoryTransport(), [new(0, 1), new(1, 2)], o => o.SessionIdleTimeout = TimeSpan.FromSeconds(1));
        await using var remote = await swarm.ConnectAsync();
        using var local = fixture.CreateBlocks();
        await using var remoteSession = await remote.OpenSessionAsync(1, 8, Ct);
        await using var localSession = await local.OpenSessionAsync(1, 8, Ct);
        var random = new Random(5);
        var first = RandomHidden(random, 3 * fixture.Config.HiddenSize);
        var (theirs, ours) = (first.ToArray(), first.ToArray());
        await remoteSession.ForwardAsync(theirs, 3, Ct);
        await localSession.ForwardAsync(ours, 3, Ct);

        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (swarm.Servers.Any(s => s.ActiveSessions > 0))
        {
            Assert.True(deadline.Elapsed < Bound, "the idle sessions were not ended");
            await Task.Delay(20, Ct);
        }

        // Both servers dropped the session: each is its own only replacement, rebuilt from the kept inputs.
        var next = RandomHidden(random, fixture.Config.HiddenSize);
        (theirs, ours) = (next.ToArray(), next.ToArray());
        await remoteSession.ForwardAsync(theirs, 1, Ct).AsTask().WaitAsync(Bound, Ct);
        await localSession.ForwardAsync(ours, 1, Ct);
        AssertClose(ours, theirs, 1e-5f);
        Assert.Equal(2, remote.Recoveries);
        Assert.Equal(4, remoteSession.Position);
        Assert.Equal(["server-0", "server-1"], remote.Spans.Select(s => s.PeerId));
    }

    [Fact]
    public async Task A_server_restarted_at_its_address_is_reconnected_and_replayed_by_default()
    {
        using var fixture = new RandomModelFixture(TensorDType.F32, tied: false, layers: 2);
        var transport = new MemoryTransport();
        await using var swarm = await Swarm.StartAsync(fixture, transport, [new(0, 1), new(1, 2)]);
        await using var remote = await swarm.ConnectAsync(new RemoteSequenceOptions { RecoveryBackoff = TimeSpan.FromMilliseconds(50) });
        using var local = fixture.CreateBlocks();
        await using var remoteSession = await remote.OpenSessionAsync(1, 8, Ct);
        await using var localSession = await local.OpenSessionAsync(1, 8, Ct);
        var random = new Random(6);
        var input = RandomHidden(random, 2 * fixture.Config.HiddenSize);
        var (theirs, ours) = (input.ToArray(), input.ToArray());
        await remoteSession.ForwardAsync(theirs, 2, Ct);
        await localSession.ForwardAsync(ours, 2, Ct);

        // Server 1 goes down and comes back at the same address (same peer id, a fresh cache).
        var address = swarm.Addresses[1];
        await swarm.Servers[1].StopAsync(Ct).WaitAsync(Bound, Ct);
        using var executor = RandomModelFixture.Factory.Create(fixture.Weights, new BlockRange(1, 2));
        await using var restarted = new BlockServer(executor, new BlockServerOptions { Blocks = new(1, 2), ModelId = Swarm.ModelId, PeerId = "server-1" });
        await restarted.StartAsync(await transport.ListenAsync(address, Ct), Ct);

        input = RandomHidden(random, fixture.Config.HiddenSize);
        (theirs, ours) = (input.ToArray(), input.ToArray());
        await remoteSession.ForwardAsync(theirs, 1, Ct).AsTask().WaitAsync(Bound, Ct);
        await localSession.ForwardAsync(ours, 1, Ct);
        AssertClose(ours, theirs, 1e-5f);
        Assert.True(remote.Recoveries >= 1, $"{remote.Recoveries} recoveries");
        Assert.Equal(3, restarted.GetStatistics().TokensProcessed);
    }

    /// <summary>A stateless forward of random hidden states through <paramref name="remote"/> equals a prefill of them through <paramref name="local"/>.</summary>
    private static async Task AssertStatelessForwardEqualsLocalAsync(RemoteTransformerBlocks remote, LocalTransformerBlocks local, Random random, int batch, int tokens)
    {
        var input = RandomHidden(random, batch * tokens * remote.Config.HiddenSize);
        var theirs = input.ToArray();
        await remote.ForwardAsync(theirs, batch, tokens, Ct);
        var ours = input.ToArray();
        await using (var session = await local.OpenSessionAsync(batch, tokens, Ct))
        {
            await session.ForwardAsync(ours, tokens, Ct);
        }

        AssertClose(ours, theirs, 1e-5f);
    }

    [Theory]
    [InlineData("shutting_down", true)]
    [InlineData("busy", false)]
    public async Task A_server_that_says_it_is_shutting_down_marks_its_connection_failed_and_no_other_error_does(string code, bool failed)
    {
        var transport = new MemoryTransport();
        await using var server = await SilentServer.StartAsync(transport, hiddenSize: 8, blocks: 2, answer: new ProtocolErrorCode(code));
        var config = new ModelConfig { HiddenSize = 8, IntermediateSize = 16, NumLayers = 2, NumHeads = 1, NumKeyValueHeads = 1, HeadDim = 8, VocabSize = 10 };
        var options = new RemoteSequenceOptions();
        await using var pool = new ConnectionPool(transport, config, Swarm.ModelId, options);
        var connection = await pool.ConnectAsync(server.Address, Ct).WaitAsync(Bound, Ct);
        await using (connection)
        {
            Assert.False(connection.IsFailed);
            var call = connection.Register(new RemoteSpanConnection.PendingCall(), connection.Connection.NewStreamId(), new float[8]);
            await connection.SendAsync(call, new ForwardRequest(new BlockRange(0, 2), WireCodec.Fp32, WireTensor.FromValues(new TensorShape(1, 1, 8), new float[8])), Ct);
            var error = await Assert.ThrowsAsync<ProtocolException>(async () => await connection.WaitAsync(call, Ct).AsTask().WaitAsync(Bound, Ct));
            Assert.Equal(code, error.Code.Value);
            Assert.True(error.IsRemoteError);

            // The transport is still open either way: only the server's word makes the connection one not to reuse.
            Assert.Equal(failed, connection.IsFailed);
        }
    }

    private static RemoteSequenceOptions FailFast() => new() { MaxRecoveryAttempts = 0 };

    /// <summary>A peer that completes the handshake and answers info, then never answers anything else (a hung server).</summary>
    private sealed class SilentServer : IProtocolMessageHandler, IAsyncDisposable
    {
        private readonly ITransportListener _listener;
        private readonly int _hiddenSize;
        private readonly int _blocks;
        private readonly bool _frozen;
        private readonly ProtocolErrorCode? _answer;
        private readonly TaskCompletionSource _frozenNow = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Task _accept;
        private ProtocolConnection? _connection;

        private SilentServer(ITransportListener listener, int hiddenSize, int blocks, bool frozen, ProtocolErrorCode? answer)
        {
            _answer = answer;
            _listener = listener;
            _hiddenSize = hiddenSize;
            _blocks = blocks;
            _frozen = frozen;
            _accept = Task.Run(async () =>
            {
                _connection = await ProtocolConnection.AcceptAsync(await listener.AcceptAsync(Ct), new ConnectionPreamble("silent", Swarm.ModelId), cancellationToken: Ct);
                try
                {
                    await _connection.RunAsync(this, Ct);
                }
                catch (Exception e) when (e is OperationCanceledException or TransportException or ProtocolException)
                {
                }
            }, Ct);
        }

        public PeerAddress Address => _listener.LocalAddress;

        /// <summary>Completes when a frozen server stopped reading.</summary>
        public Task Frozen => _frozenNow.Task;

        /// <param name="frozen">Whether the server stops reading (a hung process) at the first message after the info call.</param>
        /// <param name="answer">When set, every call after the info call is answered with an error of this code (the connection stays open).</param>
        public static async Task<SilentServer> StartAsync(ITransport transport, int hiddenSize, int blocks, bool frozen = false, ProtocolErrorCode? answer = null) =>
            new(await transport.ListenAsync(PeerAddress.Parse($"mem://silent-{Guid.NewGuid():N}"), Ct), hiddenSize, blocks, frozen, answer);

        public async ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken)
        {
            if (message is InfoRequest)
            {
                await connection.SendAsync(streamId, new InfoResponse(1, 0, Swarm.ModelId, new BlockRange(0, _blocks), _hiddenSize, TensorDType.F32, WireCodecs.All, 1000, 1 << 20, 64 << 20, 64, 64), cancellationToken);
            }
            else if (_answer is { } code)
            {
                await connection.SendAsync(streamId, new ErrorMessage(code, "test: answered with " + code.Value), cancellationToken);
            }
            else if (_frozen)
            {
                _frozenNow.TrySetResult();
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
        }

        public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure)
        {
        }

        public async ValueTask DisposeAsync()
        {
            if (_connection is not null)
            {
                await _connection.DisposeAsync();
            }

            await _listener.DisposeAsync();
            await _accept.WaitAsync(Bound);
        }
    }

    private static float[] RandomHidden(Random random, int count) => [.. Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1))];

    private static void AssertClose(float[] expected, float[] actual, float tolerance, bool relative = false)
    {
        Assert.Equal(expected.Length, actual.Length);
        var scale = relative ? Math.Max(1e-6f, expected.Max(Math.Abs)) : 1f;
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * scale, $"value {i}: expected {expected[i]}, got {actual[i]} (tolerance {tolerance * scale})");
        }
    }
}
