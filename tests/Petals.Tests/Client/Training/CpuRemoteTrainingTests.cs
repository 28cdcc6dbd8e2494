using Petals.Client;
using Petals.Execution;
using Petals.Inference;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing.Transport;
using Petals.Tests.Generation;

namespace Petals.Tests.Client.Training;

/// <summary>
/// Fine-tuning over the wire with the real CPU executor: a 3-server in-process swarm over a random Llama model gives the
/// forward outputs and the gradients (inputs, deep prompts, sent LoRA) of local blocks, with a named adapter too, and deep
/// prompt training survives server failures with the loss curve of a failure-free run.
/// </summary>
public sealed class CpuRemoteTrainingTests : IClassFixture<CpuRemoteTrainingTests.Model>
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);
    private static readonly BlockRange[] ThreeSpans = [new(0, 1), new(1, 3), new(3, 4)];
    private readonly Model _model;

    public CpuRemoteTrainingTests(Model model) => _model = model;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private ModelConfig Config => _model.Fixture.Config;

    private BlockRange All => new(0, Config.NumLayers);

    private static float[] Random(int count, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() - 0.5) * 2 * scale))];
    }

    private LoraWeights Lora(int seed, IReadOnlyList<LoraTarget> targets)
    {
        var shape = new LoraWeights(Config, All, 2, 0.5f, targets);
        return new LoraWeights(Config, All, 2, 0.5f, targets, Random(shape.Values.Length, seed, 0.2f));
    }

    private Dictionary<string, LoraWeights> Adapters() => new(StringComparer.Ordinal) { ["style"] = _model.Style };

    private Task<Swarm> StartAsync(BlockRange[] spans, Transport.ITransport? transport = null) =>
        Swarm.StartAsync(span => RandomModelFixture.Factory.Create(_model.Fixture.Weights, span), transport ?? new MemoryTransport(), spans, (_, o) => o.Adapters = Adapters());

    private LocalTransformerBlocks Local() => new([RandomModelFixture.Factory.Create(_model.Fixture.Weights, All)], adapters: Adapters());

    private BlockAdaptation? Adaptation(string mode, int batch, int promptLength = 2)
    {
        var prompts = Random(Config.NumLayers * batch * promptLength * Config.HiddenSize, 5, 0.3f);
        return mode switch
        {
            "none" => null,
            "prompts" => new BlockAdaptation { Prompts = prompts, PromptLength = promptLength },
            "lora" => new BlockAdaptation { Lora = Lora(9, LoraTargets.All) },
            "adapter+prompts" => new BlockAdaptation { Adapter = "style", Prompts = prompts, PromptLength = promptLength },
            "lora+prompts" => new BlockAdaptation { Lora = Lora(10, [LoraTarget.Query, LoraTarget.Value, LoraTarget.Down]), Prompts = prompts, PromptLength = promptLength },
            _ => throw new ArgumentOutOfRangeException(nameof(mode)),
        };
    }

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double diff = 0, norm = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            diff += (double)(expected[i] - actual[i]) * (expected[i] - actual[i]);
            norm += (double)expected[i] * expected[i];
        }

        Assert.True(norm > 0, $"{what}: all zero");
        Assert.True(Math.Sqrt(diff / norm) <= 1e-5, $"{what}: relative L2 error {Math.Sqrt(diff / norm)}");
    }

    private async Task<(float[] Outputs, float[] Gradients, BlockGradients? AdaptationGradients)> PassAsync(ITransformerBlocks blocks, int batch, int tokens, BlockAdaptation? adaptation)
    {
        var hidden = Random(batch * tokens * Config.HiddenSize, 1);
        using var activations = await blocks.ForwardAsync(hidden, batch, tokens, adaptation, Ct).AsTask().WaitAsync(Bound, Ct);
        var gradients = Random(hidden.Length, 2);
        var adaptationGradients = adaptation is null ? null : new BlockGradients
        {
            Prompts = adaptation.HasPrompts ? new float[adaptation.Prompts.Length] : Memory<float>.Empty,
            Lora = adaptation.Lora?.CreateZeros(),
        };
        await blocks.BackwardAsync(activations, gradients, adaptationGradients, Ct).AsTask().WaitAsync(Bound, Ct);
        return (hidden, gradients, adaptationGradients);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("prompts")]
    [InlineData("lora")]
    [InlineData("adapter+prompts")]
    [InlineData("lora+prompts")]
    public async Task Remote_forward_and_backward_equal_local_cpu_blocks(string mode)
    {
        await using var swarm = await StartAsync(ThreeSpans);
        await using var remote = await swarm.ConnectAsync();
        using var local = Local();
        var adaptation = Adaptation(mode, batch: 2);
        var expected = await PassAsync(local, 2, 5, adaptation);
        var actual = await PassAsync(remote, 2, 5, adaptation);
        AssertClose(expected.Outputs, actual.Outputs, "outputs");
        AssertClose(expected.Gradients, actual.Gradients, "input gradients");
        if (adaptation is { HasPrompts: true })
        {
            AssertClose(expected.AdaptationGradients!.Prompts.Span, actual.AdaptationGradients!.Prompts.Span, "prompt gradients");
        }

        if (adaptation?.Lora is not null)
        {
            AssertClose(expected.AdaptationGradients!.Lora!.Values.Span, actual.AdaptationGradients!.Lora!.Values.Span, "LoRA gradients");
        }
    }

    [Fact]
    public async Task Remote_training_passes_over_tcp_on_loopback_equal_local_cpu_blocks()
    {
        await using var swarm = await StartAsync(ThreeSpans, new Transport.Tcp.TcpTransport());
        await using var remote = await swarm.ConnectAsync();
        using var local = Local();
        var adaptation = Adaptation("lora+prompts", batch: 2);
        var expected = await PassAsync(local, 2, 5, adaptation);
        var actual = await PassAsync(remote, 2, 5, adaptation);
        AssertClose(expected.Outputs, actual.Outputs, "outputs");
        AssertClose(expected.Gradients, actual.Gradients, "input gradients");
        AssertClose(expected.AdaptationGradients!.Prompts.Span, actual.AdaptationGradients!.Prompts.Span, "prompt gradients");
        AssertClose(expected.AdaptationGradients.Lora!.Values.Span, actual.AdaptationGradients.Lora!.Values.Span, "LoRA gradients");
    }

    [Fact]
    public async Task A_session_with_a_named_adapter_and_prompts_generates_the_hidden_states_of_local_blocks()
    {
        await using var swarm = await StartAsync(ThreeSpans);
        await using var remote = await swarm.ConnectAsync();
        using var local = Local();
        var adaptation = Adaptation("adapter+prompts", batch: 1, promptLength: 3);
        await using var remoteSession = await remote.OpenSessionAsync(1, 8, adaptation, Ct).AsTask().WaitAsync(Bound, Ct);
        await using var localSession = await local.OpenSessionAsync(1, 8, adaptation, Ct);
        var seed = 40;
        foreach (var tokens in new[] { 2, 1, 1, 1 })
        {
            var expected = Random(tokens * Config.HiddenSize, seed++);
            var actual = expected.ToArray();
            await localSession.ForwardAsync(expected, tokens, Ct);
            await remoteSession.ForwardAsync(actual, tokens, Ct).AsTask().WaitAsync(Bound, Ct);
            AssertClose(expected, actual, $"step of {tokens}");
        }
    }

    [Fact]
    public async Task Training_deep_prompts_on_cpu_blocks_survives_server_failures_with_the_failure_free_loss_curve()
    {
        var clean = await TrainAsync(kill: false);
        var faulty = await TrainAsync(kill: true);
        Assert.True(clean[^1] < clean[0], $"the loss did not fall: {string.Join(", ", clean)}");
        for (var i = 0; i < clean.Count; i++)
        {
            Assert.True(Math.Abs(clean[i] - faulty[i]) <= 1e-5 * Math.Max(1, Math.Abs(clean[i])), $"step {i}: {clean[i]} without failures, {faulty[i]} with");
        }
    }

    private async Task<List<double>> TrainAsync(bool kill)
    {
        BlockRange[] spans = [new(0, 2), new(0, 2), new(2, 4), new(2, 4)];
        await using var swarm = await StartAsync(spans);
        await using var remote = await swarm.ConnectAsync(new RemoteSequenceOptions { RecoveryBackoff = TimeSpan.FromMilliseconds(1) });
        const int batch = 2;
        const int tokens = 4;
        const int promptLength = 2;
        var h = Config.HiddenSize;
        var prompts = new float[Config.NumLayers * batch * promptLength * h];
        var input = Random(batch * tokens * h, 11);
        var target = Random(input.Length, 12);
        var losses = new List<double>();
        for (var step = 0; step < 4; step++)
        {
            if (kill && step == 1)
            {
                await swarm.StopAsync(0);
            }

            var hidden = input.ToArray();
            using var activations = await remote.ForwardAsync(hidden, batch, tokens, new BlockAdaptation { Prompts = prompts.ToArray(), PromptLength = promptLength }, Ct).AsTask().WaitAsync(Bound, Ct);
            var gradients = new float[hidden.Length];
            double loss = 0;
            for (var i = 0; i < hidden.Length; i++)
            {
                var d = hidden[i] - target[i];
                loss += 0.5 * d * d;
                gradients[i] = (float)d;
            }

            losses.Add(loss);
            if (kill && step == 2)
            {
                var runner = activations.Segments[^1].Runner!;
                await swarm.StopAsync(swarm.Servers.FindIndex(s => s.Options.PeerId == runner));
            }

            var promptGradients = new float[prompts.Length];
            await remote.BackwardAsync(activations, gradients, new BlockGradients { Prompts = promptGradients }, Ct).AsTask().WaitAsync(Bound, Ct);
            for (var i = 0; i < prompts.Length; i++)
            {
                prompts[i] -= 0.02f * promptGradients[i];
            }
        }

        return losses;
    }

    /// <summary>The random model and a named adapter for all its blocks.</summary>
    public sealed class Model : IDisposable
    {
        public Model()
        {
            Fixture = new RandomModelFixture(TensorDType.F32, tied: false);
            var config = Fixture.Config;
            var all = new BlockRange(0, config.NumLayers);
            var shape = new LoraWeights(config, all, 4, 0.5f, [LoraTarget.Query, LoraTarget.Output, LoraTarget.Up]);
            var random = new Random(21);
            Style = new LoraWeights(config, all, 4, 0.5f, shape.Targets, Enumerable.Range(0, shape.Values.Length).Select(_ => (float)((random.NextDouble() - 0.5) * 0.4)).ToArray());
        }

        internal RandomModelFixture Fixture { get; }

        internal LoraWeights Style { get; }

        public void Dispose() => Fixture.Dispose();
    }
}
