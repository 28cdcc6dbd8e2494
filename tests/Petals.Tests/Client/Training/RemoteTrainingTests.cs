using Petals.Client;
using Petals.Execution;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Server;
using Petals.Testing.Transport;
using Petals.Tests.Server;

namespace Petals.Tests.Client.Training;

/// <summary>
/// Fine-tuning over the wire on an in-process swarm of <see cref="ToyBlockExecutor"/> servers: remote forward and
/// backward equal local blocks' (with prompts, sent LoRA, a named adapter), batches split by <c>MaxBatchTokens</c>,
/// adapted sessions, routing by adapter, bad inputs, and training that survives server failures.
/// </summary>
public sealed class RemoteTrainingTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private static readonly ModelConfig Config = ToyBlockExecutor.ToyConfig(6);
    private static readonly BlockRange All = new(0, 6);
    private static readonly BlockRange[] ThreeSpans = [new(0, 2), new(2, 4), new(4, 6)];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static float[] Random(int count, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() - 0.5) * 2 * scale))];
    }

    private static LoraWeights Lora(int seed, BlockRange blocks) => new(Config, blocks, 2, 0.75f, [LoraTarget.Query], Random(blocks.Count * 2 * 16, seed, 0.5f));

    private static readonly LoraWeights Style = Lora(77, All);

    private static Dictionary<string, LoraWeights> Adapters() => new(StringComparer.Ordinal) { ["style"] = Style };

    private static LocalTransformerBlocks Local() => new([new ToyBlockExecutor(Config, All)], adapters: Adapters());

    private static Task<Swarm> StartAsync(BlockRange[] spans, Action<int, BlockServerOptions>? configure = null) =>
        Swarm.StartAsync(span => new ToyBlockExecutor(Config, span), new MemoryTransport(), spans, (i, o) =>
        {
            o.Adapters = Adapters();
            configure?.Invoke(i, o);
        });

    private static BlockAdaptation? Adaptation(string mode, int batch, int promptLength = 2) => mode switch
    {
        "none" => null,
        "prompts" => new BlockAdaptation { Prompts = Random(6 * batch * promptLength * 8, 5, 0.3f), PromptLength = promptLength },
        "lora" => new BlockAdaptation { Lora = Lora(9, All) },
        "adapter" => new BlockAdaptation { Adapter = "style" },
        "adapter+prompts" => new BlockAdaptation { Adapter = "style", Prompts = Random(6 * batch * promptLength * 8, 6, 0.3f), PromptLength = promptLength },
        "lora+prompts" => new BlockAdaptation { Lora = Lora(10, All), Prompts = Random(6 * batch * promptLength * 8, 7, 0.3f), PromptLength = promptLength },
        _ => throw new ArgumentOutOfRangeException(nameof(mode)),
    };

    private static BlockGradients? GradientsFor(BlockAdaptation? adaptation) => adaptation is null ? null : new BlockGradients
    {
        Prompts = adaptation.HasPrompts ? new float[adaptation.Prompts.Length] : Memory<float>.Empty,
        Lora = adaptation.Lora?.CreateZeros(),
    };

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * (1 + Math.Abs(expected[i])), $"{what} [{i}]: expected {expected[i]}, got {actual[i]}");
        }
    }

    /// <summary>One forward and backward pass through <paramref name="blocks"/>: outputs, input gradients and adaptation gradients.</summary>
    private static async Task<(float[] Outputs, float[] Gradients, BlockGradients? AdaptationGradients, ForwardActivations Activations)> PassAsync(
        ITransformerBlocks blocks, int batch, int tokens, BlockAdaptation? adaptation)
    {
        var hidden = Random(batch * tokens * 8, 1);
        var activations = await blocks.ForwardAsync(hidden, batch, tokens, adaptation, Ct).AsTask().WaitAsync(Bound, Ct);
        var gradients = Random(hidden.Length, 2);
        var adaptationGradients = GradientsFor(adaptation);
        await blocks.BackwardAsync(activations, gradients, adaptationGradients, Ct).AsTask().WaitAsync(Bound, Ct);
        return (hidden, gradients, adaptationGradients, activations);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("prompts")]
    [InlineData("lora")]
    [InlineData("adapter")]
    [InlineData("adapter+prompts")]
    [InlineData("lora+prompts")]
    public async Task Remote_forward_and_backward_through_three_servers_equal_local_blocks(string mode)
    {
        await using var swarm = await StartAsync(ThreeSpans);
        await using var remote = await swarm.ConnectAsync();
        using var local = Local();
        var adaptation = Adaptation(mode, batch: 2);
        var (expectedOut, expectedGrad, expectedAdaptation, localActs) = await PassAsync(local, 2, 5, adaptation);
        var (actualOut, actualGrad, actualAdaptation, remoteActs) = await PassAsync(remote, 2, 5, adaptation);
        using (localActs)
        using (remoteActs)
        {
            AssertClose(expectedOut, actualOut, 1e-5f, "outputs");
            AssertClose(expectedGrad, actualGrad, 1e-5f, "input gradients");
            if (adaptation is { HasPrompts: true })
            {
                AssertClose(expectedAdaptation!.Prompts.Span, actualAdaptation!.Prompts.Span, 1e-5f, "prompt gradients");
                Assert.Contains(actualAdaptation.Prompts.ToArray(), v => v != 0);
            }

            if (adaptation?.Lora is not null)
            {
                AssertClose(expectedAdaptation!.Lora!.Values.Span, actualAdaptation!.Lora!.Values.Span, 1e-5f, "LoRA gradients");
                Assert.Contains(actualAdaptation.Lora.Values.ToArray(), v => v != 0);
            }

            // Each server ran its span and is saved as the runner of its segment's input.
            Assert.Equal(ThreeSpans, remoteActs.Segments.Select(s => s.Blocks));
            Assert.Equal(["server-0", "server-1", "server-2"], remoteActs.Segments.Select(s => s.Runner));
            Assert.All(swarm.Servers, s => Assert.Equal(1, s.GetStatistics().BackwardCalls));
        }
    }

    [Fact]
    public async Task A_named_adapter_changes_the_outputs_as_its_weights_sent_by_the_client_do()
    {
        await using var swarm = await StartAsync(ThreeSpans);
        await using var remote = await swarm.ConnectAsync();
        var (plain, _, _, a) = await PassAsync(remote, 1, 4, null);
        var (named, _, _, b) = await PassAsync(remote, 1, 4, new BlockAdaptation { Adapter = "style" });
        var (sent, _, _, c) = await PassAsync(remote, 1, 4, new BlockAdaptation { Lora = Style });
        using (a)
        using (b)
        using (c)
        {
            Assert.NotEqual(plain, named);
            AssertClose(sent, named, 1e-6f, "named adapter vs the same weights sent");
        }
    }

    [Fact]
    public async Task Batches_are_split_into_whole_sequences_within_each_servers_max_batch_tokens()
    {
        // 10 batch x tokens per call and 5 tokens per sequence: 2 sequences per call, so a batch of 5 takes 3 calls per server.
        await using var swarm = await StartAsync(ThreeSpans, (_, o) => o.MaxBatchTokens = 10);
        await using var remote = await swarm.ConnectAsync();
        using var local = Local();
        var adaptation = Adaptation("lora+prompts", batch: 5);
        var (expectedOut, expectedGrad, expectedAdaptation, localActs) = await PassAsync(local, 5, 5, adaptation);
        var (actualOut, actualGrad, actualAdaptation, remoteActs) = await PassAsync(remote, 5, 5, adaptation);
        using (localActs)
        using (remoteActs)
        {
            AssertClose(expectedOut, actualOut, 1e-5f, "outputs");
            AssertClose(expectedGrad, actualGrad, 1e-5f, "input gradients");
            AssertClose(expectedAdaptation!.Prompts.Span, actualAdaptation!.Prompts.Span, 1e-5f, "prompt gradients");
            AssertClose(expectedAdaptation.Lora!.Values.Span, actualAdaptation.Lora!.Values.Span, 1e-4f, "LoRA gradients (summed over chunks)");
        }

        Assert.All(swarm.Servers, s =>
        {
            var stats = s.GetStatistics();
            Assert.Equal(3, stats.ForwardCalls);
            Assert.Equal(3, stats.BackwardCalls);
        });
    }

    [Theory]
    [InlineData("prompts")]
    [InlineData("adapter+prompts")]
    [InlineData("lora")]
    public async Task An_adapted_session_gives_the_outputs_of_local_blocks_step_by_step(string mode)
    {
        await using var swarm = await StartAsync(ThreeSpans);
        await using var remote = await swarm.ConnectAsync();
        using var local = Local();
        var adaptation = Adaptation(mode, batch: 2, promptLength: 3);
        await using var remoteSession = await remote.OpenSessionAsync(2, 8, adaptation, Ct).AsTask().WaitAsync(Bound, Ct);
        await using var localSession = await local.OpenSessionAsync(2, 8, adaptation, Ct);
        var seed = 30;
        foreach (var tokens in new[] { 2, 1, 1, 2 })
        {
            var expected = Random(2 * tokens * 8, seed++);
            var actual = expected.ToArray();
            await localSession.ForwardAsync(expected, tokens, Ct);
            await remoteSession.ForwardAsync(actual, tokens, Ct).AsTask().WaitAsync(Bound, Ct);
            AssertClose(expected, actual, 1e-5f, $"step of {tokens} tokens");
        }
    }

    [Fact]
    public async Task An_adapted_session_replays_its_prompts_to_a_replacement_server()
    {
        await using var swarm = await StartAsync([new(0, 3), new(3, 6), new(3, 6)]);
        await using var remote = await swarm.ConnectAsync();
        using var local = Local();
        var adaptation = Adaptation("prompts", batch: 1, promptLength: 3);
        await using var remoteSession = await remote.OpenSessionAsync(1, 8, adaptation, Ct).AsTask().WaitAsync(Bound, Ct);
        await using var localSession = await local.OpenSessionAsync(1, 8, adaptation, Ct);
        for (var step = 0; step < 4; step++)
        {
            if (step == 2)
            {
                var serving = remote.Spans.Single(s => s.Blocks.Start == 3).PeerId;
                await swarm.StopAsync(serving == "server-1" ? 1 : 2);
            }

            var expected = Random(8, 50 + step);
            var actual = expected.ToArray();
            await localSession.ForwardAsync(expected, 1, Ct);
            await remoteSession.ForwardAsync(actual, 1, Ct).AsTask().WaitAsync(Bound, Ct);
            AssertClose(expected, actual, 1e-5f, $"step {step}");
        }

        Assert.Equal(1, remote.Recoveries);
    }

    [Fact]
    public async Task A_client_naming_an_adapter_no_server_holds_gets_a_clear_error_naming_it()
    {
        await using var swarm = await StartAsync(ThreeSpans, (i, o) => o.Adapters = i == 1 ? new Dictionary<string, LoraWeights>() : Adapters());
        await using var remote = await swarm.ConnectAsync();
        var hidden = Random(8 * 3, 3);
        var error = await Assert.ThrowsAsync<RemoteChainException>(async () =>
            await remote.ForwardAsync(hidden, 1, 3, new BlockAdaptation { Adapter = "style" }, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Contains("adapter 'style'", error.Message, StringComparison.Ordinal);
        Assert.Contains(new BlockRange(2, 4).ToString(), error.Message, StringComparison.Ordinal);

        var missing = await Assert.ThrowsAsync<RemoteChainException>(async () =>
            await remote.OpenSessionAsync(1, 4, new BlockAdaptation { Adapter = "pirate" }, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Contains("adapter 'pirate'", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_plain_stateless_forward_is_split_by_max_batch_tokens_too()
    {
        await using var swarm = await StartAsync(ThreeSpans, (_, o) => o.MaxBatchTokens = 6);
        await using var remote = await swarm.ConnectAsync();
        using var local = Local();
        var expected = Random(4 * 3 * 8, 21);
        var actual = expected.ToArray();
        using (await local.ForwardAsync(expected, 4, 3, null, Ct))
        {
        }

        await remote.ForwardAsync(actual, 4, 3, Ct).AsTask().WaitAsync(Bound, Ct);
        AssertClose(expected, actual, 1e-5f, "outputs");
        Assert.All(swarm.Servers, s => Assert.Equal(2, s.GetStatistics().ForwardCalls));
    }

    [Fact]
    public async Task A_sequence_longer_than_a_server_takes_per_call_is_refused_on_the_client_without_blaming_the_server()
    {
        await using var swarm = await StartAsync(ThreeSpans, (i, o) => o.MaxBatchTokens = i == 1 ? 4 : 64);
        await using var remote = await swarm.ConnectAsync();
        var hidden = Random(5 * 8, 1);
        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () =>
            await remote.ForwardAsync(hidden, 1, 5, new BlockAdaptation { Lora = Lora(1, All) }, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Contains("takes at most 4 batch x tokens per call (its MaxBatchTokens), less than one sequence of 5 tokens", error.Message, StringComparison.Ordinal);
        Assert.Empty(remote.Sequence.BannedPeers);
    }

    [Fact]
    public async Task A_peer_of_protocol_1_2_gets_no_adapters_list_and_one_of_1_3_does()
    {
        await using var swarm = await StartAsync([All]);
        foreach (var (minor, expected) in new (ushort, string[]?)[] { (2, null), (3, ["style"]) })
        {
            var preamble = new ConnectionPreamble("old-client", Swarm.ModelId, VersionMinor: minor);
            await using var connection = await ProtocolConnection.ConnectAsync(swarm.Transport, swarm.Addresses[0], preamble, cancellationToken: Ct).WaitAsync(Bound, Ct);
            var info = swarm.Servers[0].CreateInfo(connection.VersionMinor);
            Assert.Equal(minor, connection.VersionMinor);
            Assert.Equal(expected, info.Adapters);
        }
    }

    [Fact]
    public async Task A_client_with_fixed_peers_learns_the_adapters_from_their_info()
    {
        await using var swarm = await StartAsync(ThreeSpans);
        await using var remote = await swarm.ConnectAsync();
        Assert.All(remote.Sequence.OnlineServers, s => Assert.Equal(["style"], s.Adapters));
    }

    [Fact]
    public async Task The_server_refuses_bad_fine_tuning_requests_precisely_and_keeps_serving()
    {
        await using var swarm = await StartAsync([new(0, 3)], (_, o) => o.MaxBatchTokens = 12);
        await using var client = await TestClient.ConnectAsync(swarm.Transport, swarm.Addresses[0], Swarm.ModelId);
        var blocks = new BlockRange(0, 3);
        WireTensor Tensor(int batch, int tokens, float bad = 0)
        {
            var values = Random(batch * tokens * 8, 4);
            if (bad != 0)
            {
                values[5] = bad;
            }

            return WireTensor.FromValues(new TensorShape(batch, tokens, 8), values);
        }

        var nan = await client.CallAsync(new BackwardRequest(blocks, WireCodec.Fp32, Tensor(1, 2), Tensor(1, 2, float.NaN)));
        BlockServerTests.AssertError(nan, "non_finite_input", "the output gradients [1, 2, 8] hold NaN at index 5");

        var infPrompt = new float[3 * 1 * 2 * 8];
        infPrompt[9] = float.PositiveInfinity;
        var badPrompt = await client.CallAsync(new BackwardRequest(blocks, WireCodec.Fp32, Tensor(1, 2), Tensor(1, 2), WireTensor.FromValues(new TensorShape(3, 1, 2, 8), infPrompt)));
        BlockServerTests.AssertError(badPrompt, "non_finite_input", "the prompts [3, 1, 2, 8] hold +Infinity at index 9");

        var nanLora = Lora(3, blocks);
        nanLora.Values.Span[7] = float.NaN;
        var badLora = await client.CallAsync(new ForwardRequest(blocks, WireCodec.Fp32, Tensor(1, 2)) { Lora = WireLora.From(nanLora) });
        BlockServerTests.AssertError(badLora, "non_finite_input", "the LoRA weights");

        var shortLora = await client.CallAsync(new ForwardRequest(blocks, WireCodec.Fp32, Tensor(1, 2)) { Lora = WireLora.From(Lora(3, new BlockRange(0, 2))) });
        BlockServerTests.AssertError(shortLora, "bad_shape", "the LoRA weights hold 64 values");

        var wrongPrompts = await client.CallAsync(new BackwardRequest(blocks, WireCodec.Fp32, Tensor(2, 2), Tensor(2, 2), WireTensor.FromValues(new TensorShape(3, 1, 2, 8), new float[48])));
        BlockServerTests.AssertError(wrongPrompts, "bad_shape", "deep prompts [3, 1, 2, 8] do not fit [blocks 3, batch 2, prefix, hidden 8]");

        var tooLarge = await client.CallAsync(new BackwardRequest(blocks, WireCodec.Fp32, Tensor(2, 7), Tensor(2, 7)));
        BlockServerTests.AssertError(tooLarge, "request_too_large", "carry 14 batch x tokens, above this server's limit of 12");

        var unknown = await client.CallAsync(new BackwardRequest(blocks, WireCodec.Fp32, Tensor(1, 2), Tensor(1, 2)) { Adapter = "pirate" });
        BlockServerTests.AssertError(unknown, "unknown_adapter", "adapter 'pirate' is not held by this server (it has: 'style')");

        var both = await client.CallAsync(new ForwardRequest(blocks, WireCodec.Fp32, Tensor(1, 2)) { Adapter = "style", Lora = WireLora.From(Lora(3, blocks)) });
        BlockServerTests.AssertError(both, "malformed_frame", "a call uses one or the other");

        // The connection still serves: a good backward call answers with every gradient asked for.
        var good = await client.CallAsync(new BackwardRequest(blocks, WireCodec.Fp32, Tensor(1, 2), Tensor(1, 2), WireTensor.FromValues(new TensorShape(3, 1, 2, 8), new float[48])) { Lora = WireLora.From(Lora(3, blocks)) });
        var response = Assert.IsType<BackwardResponse>(good.Message);
        Assert.Equal(new TensorShape(3, 1, 2, 8), response.GradPrompts!.Value.Shape);
        Assert.Equal(new TensorShape(Lora(3, blocks).Values.Length), response.GradLora!.Value.Shape);
        var stats = swarm.Servers[0].GetStatistics();
        Assert.Equal(3, stats.NonFiniteInputsRefused);
        Assert.Equal(1, stats.BackwardCalls);
    }

    [Fact]
    public async Task A_backward_call_to_a_server_whose_executor_has_no_backward_is_answered_unsupported()
    {
        await using var swarm = await Swarm.StartAsync(span => new Petals.Testing.Execution.WholeSpanOnlyBlockExecutor(new ToyBlockExecutor(Config, span)), new MemoryTransport(), [All]);
        await using var client = await TestClient.ConnectAsync(swarm.Transport, swarm.Addresses[0], Swarm.ModelId);
        var hidden = WireTensor.FromValues(new TensorShape(1, 2, 8), Random(16, 3));
        var reply = await client.CallAsync(new BackwardRequest(All, WireCodec.Fp32, hidden, hidden));
        BlockServerTests.AssertError(reply, "unsupported", "this server cannot run the backward pass");
        BlockServerTests.AssertError(reply, "unsupported", "has no backward pass");
        var prompts = WireTensor.FromValues(new TensorShape(6, 1, 1, 8), new float[48]);
        var forward = await client.CallAsync(new ForwardRequest(All, WireCodec.Fp32, hidden, prompts));
        BlockServerTests.AssertError(forward, "unsupported", "this server cannot run the forward pass");
        Assert.IsType<ForwardResponse>((await client.CallAsync(new ForwardRequest(All, WireCodec.Fp32, hidden))).Message);
    }

    [Fact]
    public async Task Server_adapters_must_cover_its_blocks_fit_its_model_and_have_valid_names()
    {
        using var executor = new ToyBlockExecutor(Config, new BlockRange(2, 4));
        BlockServerOptions Options(string name, LoraWeights weights) => new() { Blocks = new(2, 4), ModelId = "m", Adapters = new Dictionary<string, LoraWeights> { [name] = weights } };
        var narrow = Assert.Throws<ArgumentException>(() => new BlockServer(executor, Options("a", Lora(1, new BlockRange(2, 3)))));
        Assert.Contains($"Adapter 'a' covers blocks {new BlockRange(2, 3)}; it must cover the server's blocks {new BlockRange(2, 4)}", narrow.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new BlockServer(executor, Options("", Lora(1, All))));
        var unannounceable = Assert.Throws<ArgumentException>(() => new BlockServer(executor, Options("my style", Lora(1, All))));
        Assert.Contains("The server's adapters cannot be announced: ", unannounceable.Message, StringComparison.Ordinal);
        var other = Config with { HiddenSize = 16, NumHeads = 4 };
        var alien = new LoraWeights(other, All, 1, 1f, [LoraTarget.Query]);
        Assert.Contains("shaped for another model", Assert.Throws<ArgumentException>(() => new BlockServer(executor, Options("b", alien))).Message, StringComparison.Ordinal);
        await using var server = new BlockServer(executor, Options("style", Style));
        Assert.Equal(["style"], server.CreateInfo().Adapters);
    }

    [Fact]
    public async Task A_session_step_with_non_finite_prompts_is_refused_and_the_session_goes_on()
    {
        await using var swarm = await StartAsync([new(0, 6)]);
        await using var client = await TestClient.ConnectAsync(swarm.Transport, swarm.Addresses[0], Swarm.ModelId);
        var stream = client.Connection.NewStreamId();
        await client.Connection.SendAsync(stream, new InferenceOpen(Guid.NewGuid(), All, 8, WireCodec.Fp32) { Adapter = "style" }, Ct);
        var hidden = WireTensor.FromValues(new TensorShape(1, 1, 8), Random(8, 8));
        var prompts = new float[6 * 2 * 8];
        prompts[20] = float.NaN;
        await client.Connection.SendAsync(stream, new InferenceStep(1, 0, hidden, WireTensor.FromValues(new TensorShape(6, 1, 2, 8), prompts)), Ct);
        BlockServerTests.AssertError(await client.NextAsync(stream), "non_finite_input", "step 1: the prompts [6, 1, 2, 8] hold NaN at index 20");
        prompts[20] = 0;
        await client.Connection.SendAsync(stream, new InferenceStep(2, 0, hidden, WireTensor.FromValues(new TensorShape(6, 1, 2, 8), prompts)), Ct);
        Assert.Equal(1, Assert.IsType<InferenceStepResult>((await client.NextAsync(stream)).Message).Position);
    }

    [Fact]
    public async Task Opening_a_session_with_an_unknown_adapter_ends_it_with_an_error_listing_the_servers_adapters()
    {
        await using var swarm = await StartAsync([new(0, 6)]);
        await using var client = await TestClient.ConnectAsync(swarm.Transport, swarm.Addresses[0], Swarm.ModelId);
        var stream = client.Connection.NewStreamId();
        await client.Connection.SendAsync(stream, new InferenceOpen(Guid.NewGuid(), All, 8, WireCodec.Fp32) { Adapter = "pirate" }, Ct);
        BlockServerTests.AssertError(await client.NextAsync(stream), "unknown_adapter", "(it has: 'style')");
    }

    /// <summary>
    /// Deep prompt tuning by plain gradient descent on <c>L = ½ Σ (out − target)²</c> through the blocks, killing
    /// servers on the way when <paramref name="kill"/> is set (two servers per span, so a route remains): the losses.
    /// </summary>
    private static async Task<List<double>> TrainAsync(bool kill)
    {
        BlockRange[] spans = [new(0, 2), new(0, 2), new(2, 4), new(2, 4), new(4, 6), new(4, 6)];
        await using var swarm = await StartAsync(spans);
        await using var remote = await swarm.ConnectAsync(new RemoteSequenceOptions { RecoveryBackoff = TimeSpan.FromMilliseconds(1) });
        const int batch = 2;
        const int tokens = 4;
        const int promptLength = 2;
        var prompts = new float[6 * batch * promptLength * 8];
        var input = Random(batch * tokens * 8, 11);
        var target = Random(input.Length, 12);
        var losses = new List<double>();
        var stopped = new HashSet<int>();
        for (var step = 0; step < 6; step++)
        {
            var adaptation = new BlockAdaptation { Prompts = prompts.ToArray(), PromptLength = promptLength };
            if (kill && step == 1)
            {
                // Before a forward pass: the client finds a dead server when it routes or calls.
                await StopAsync(swarm, stopped, 0);
            }

            var hidden = input.ToArray();
            using var activations = await remote.ForwardAsync(hidden, batch, tokens, adaptation, Ct).AsTask().WaitAsync(Bound, Ct);
            var gradients = new float[hidden.Length];
            double loss = 0;
            for (var i = 0; i < hidden.Length; i++)
            {
                var d = hidden[i] - target[i];
                loss += 0.5 * d * d;
                gradients[i] = (float)d;
            }

            losses.Add(loss);
            if (kill && step is 3 or 4)
            {
                // Between forward and backward: the server that ran the middle (step 3) or last (step 4) segment dies, so
                // the backward pass routes its blocks again and recomputes their inputs.
                var runner = activations.Segments.First(s => s.Blocks.Contains(step == 3 ? 2 : 5)).Runner!;
                await StopAsync(swarm, stopped, swarm.Servers.FindIndex(s => s.Options.PeerId == runner));
            }

            var promptGradients = new float[prompts.Length];
            await remote.BackwardAsync(activations, gradients, new BlockGradients { Prompts = promptGradients }, Ct).AsTask().WaitAsync(Bound, Ct);
            for (var i = 0; i < prompts.Length; i++)
            {
                prompts[i] -= 0.05f * promptGradients[i];
            }
        }

        if (kill)
        {
            Assert.Equal(3, stopped.Count);
            Assert.True(swarm.Servers.Where((_, i) => !stopped.Contains(i)).Sum(s => s.GetStatistics().BackwardCalls) >= 6);
        }

        return losses;
    }

    private static async Task StopAsync(Swarm swarm, HashSet<int> stopped, int index)
    {
        Assert.True(stopped.Add(index), $"server {index} is stopped already");
        await swarm.StopAsync(index);
    }

    [Fact]
    public async Task Training_deep_prompts_survives_server_failures_with_the_loss_curve_of_a_failure_free_run()
    {
        var clean = await TrainAsync(kill: false);
        var faulty = await TrainAsync(kill: true);
        Assert.True(clean[^1] < clean[0] * 0.9, $"the loss did not fall: {string.Join(", ", clean)}");
        Assert.Equal(clean.Count, faulty.Count);
        for (var i = 0; i < clean.Count; i++)
        {
            Assert.True(Math.Abs(clean[i] - faulty[i]) <= 1e-6 * Math.Max(1, Math.Abs(clean[i])), $"step {i}: {clean[i]} without failures, {faulty[i]} with");
        }
    }
}
