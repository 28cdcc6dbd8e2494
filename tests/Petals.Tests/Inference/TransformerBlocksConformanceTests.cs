using Petals.Inference;
using Petals.Tensors;
using Petals.Tests.Generation;

namespace Petals.Tests.Inference;

/// <summary>
/// The behaviour every <see cref="ITransformerBlocks"/> must have, whatever runs the blocks: the same outputs as one
/// local executor of the whole model, independent sessions, and the same errors for bad input, after which the session
/// goes on unharmed. Subclassed for local blocks, a chain of servers given by address and a chain routed through a DHT.
/// </summary>
public abstract class TransformerBlocksConformanceTests
{
    /// <summary>How long any one operation may take.</summary>
    protected static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>The largest absolute difference from the reference allowed (remote chains add a network hop, not numerics).</summary>
    protected virtual float Tolerance => 1e-5f;

    /// <summary>The test's cancellation token.</summary>
    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Creates the blocks under test over <paramref name="fixture"/>'s model; disposing the result releases them.</summary>
    private protected abstract Task<BlocksUnderTest> CreateAsync(RandomModelFixture fixture);

    [Fact]
    public async Task The_config_is_the_models()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        var (expected, actual) = (fixture.Config, subject.Blocks.Config);
        Assert.Equal(
            (expected.HiddenSize, expected.IntermediateSize, expected.NumLayers, expected.NumHeads, expected.NumKeyValueHeads, expected.HeadDim, expected.VocabSize),
            (actual.HiddenSize, actual.IntermediateSize, actual.NumLayers, actual.NumHeads, actual.NumKeyValueHeads, actual.HeadDim, actual.VocabSize));
    }

    [Fact]
    public async Task A_session_equals_the_reference_step_by_step_for_a_batch_of_two()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        using var reference = fixture.CreateBlocks();
        await using var session = await subject.Blocks.OpenSessionAsync(2, 16, Ct).AsTask().WaitAsync(Bound, Ct);
        await using var expected = await reference.OpenSessionAsync(2, 16, Ct);
        Assert.Equal((2, 16, 0), (session.BatchSize, session.MaxLength, session.Position));
        var random = new Random(31);
        var position = 0;
        foreach (var tokens in new[] { 5, 1, 1, 3, 1 })
        {
            await StepBothAsync(session, expected, Hidden(random, 2, tokens, fixture), tokens);
            position += tokens;
            Assert.Equal(position, session.Position);
        }
    }

    [Fact]
    public async Task Two_sessions_interleaved_are_independent()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        using var reference = fixture.CreateBlocks();
        await using var first = await subject.Blocks.OpenSessionAsync(1, 8, Ct).AsTask().WaitAsync(Bound, Ct);
        await using var second = await subject.Blocks.OpenSessionAsync(1, 8, Ct).AsTask().WaitAsync(Bound, Ct);
        await using var firstExpected = await reference.OpenSessionAsync(1, 8, Ct);
        await using var secondExpected = await reference.OpenSessionAsync(1, 8, Ct);
        var random = new Random(32);
        await StepBothAsync(first, firstExpected, Hidden(random, 1, 3, fixture), 3);
        await StepBothAsync(second, secondExpected, Hidden(random, 1, 2, fixture), 2);
        await StepBothAsync(first, firstExpected, Hidden(random, 1, 1, fixture), 1);
        await StepBothAsync(second, secondExpected, Hidden(random, 1, 1, fixture), 1);
        Assert.Equal((4, 3), (first.Position, second.Position));
    }

    [Fact]
    public async Task A_session_rolled_back_equals_a_fresh_one_over_the_kept_positions()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        using var reference = fixture.CreateBlocks();
        await using var session = await subject.Blocks.OpenSessionAsync(2, 16, Ct).AsTask().WaitAsync(Bound, Ct);
        await using var expected = await reference.OpenSessionAsync(2, 16, Ct);
        var random = new Random(35);
        var kept = Hidden(random, 2, 4, fixture);
        await StepBothAsync(session, expected, kept, 4);
        await session.ForwardAsync(Hidden(random, 2, 1, fixture), 1, Ct).AsTask().WaitAsync(Bound, Ct);
        await session.ForwardAsync(Hidden(random, 2, 3, fixture), 3, Ct).AsTask().WaitAsync(Bound, Ct);

        Assert.Equal("length", Assert.Throws<ArgumentOutOfRangeException>(() => session.Truncate(-1)).ParamName);
        Assert.Equal("length", Assert.Throws<ArgumentOutOfRangeException>(() => session.Truncate(9)).ParamName);
        Assert.Equal(8, session.Position);
        session.Truncate(4);
        Assert.Equal(4, session.Position);

        // What follows overwrites the rolled-back positions; the reference never saw them.
        await StepBothAsync(session, expected, Hidden(random, 2, 2, fixture), 2);
        await StepBothAsync(session, expected, Hidden(random, 2, 1, fixture), 1);
        Assert.Equal(7, session.Position);

        // Back to nothing: as a fresh session.
        session.Truncate(0);
        await using var fresh = await reference.OpenSessionAsync(2, 16, Ct);
        await StepBothAsync(session, fresh, Hidden(random, 2, 3, fixture), 3);
    }

    [Fact]
    public async Task A_prefill_in_one_step_equals_the_same_tokens_one_at_a_time()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        var input = Hidden(new Random(33), 1, 4, fixture);
        var whole = input.ToArray();
        await using (var session = await subject.Blocks.OpenSessionAsync(1, 4, Ct).AsTask().WaitAsync(Bound, Ct))
        {
            await session.ForwardAsync(whole, 4, Ct).AsTask().WaitAsync(Bound, Ct);
        }

        var width = fixture.Config.HiddenSize;
        var stepped = input.ToArray();
        await using (var session = await subject.Blocks.OpenSessionAsync(1, 4, Ct).AsTask().WaitAsync(Bound, Ct))
        {
            for (var t = 0; t < 4; t++)
            {
                await session.ForwardAsync(stepped.AsMemory(t * width, width), 1, Ct).AsTask().WaitAsync(Bound, Ct);
            }
        }

        AssertClose(whole, stepped, 1e-4f);
    }

    [Fact]
    public async Task Opening_with_a_batch_or_length_below_one_is_refused_naming_the_argument()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        Assert.Equal("batchSize", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => subject.Blocks.OpenSessionAsync(0, 8, Ct).AsTask())).ParamName);
        Assert.Equal("maxLength", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => subject.Blocks.OpenSessionAsync(1, 0, Ct).AsTask())).ParamName);
        using var canceled = new CancellationTokenSource();
        await canceled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => subject.Blocks.OpenSessionAsync(1, 8, canceled.Token).AsTask());
    }

    [Fact]
    public async Task Bad_steps_are_refused_precisely_and_the_session_goes_on_unharmed()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        using var reference = fixture.CreateBlocks();
        await using var session = await subject.Blocks.OpenSessionAsync(2, 4, Ct).AsTask().WaitAsync(Bound, Ct);
        await using var expected = await reference.OpenSessionAsync(2, 4, Ct);
        var random = new Random(34);
        var width = fixture.Config.HiddenSize;
        await StepBothAsync(session, expected, Hidden(random, 2, 2, fixture), 2);

        var shape = await Assert.ThrowsAsync<ArgumentException>(() => session.ForwardAsync(new float[(2 * width) + 1], 1, Ct).AsTask());
        Assert.Equal("hidden", shape.ParamName);
        Assert.StartsWith($"Hidden states hold {(2 * width) + 1} values; expected batch 2 x tokens 1 x hidden {width} = {2 * width}.", shape.Message, StringComparison.Ordinal);
        Assert.Equal("tokenCount", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => session.ForwardAsync(Memory<float>.Empty, 0, Ct).AsTask())).ParamName);
        var full = await Assert.ThrowsAsync<InvalidOperationException>(() => session.ForwardAsync(new float[2 * 3 * width], 3, Ct).AsTask());
        Assert.Equal("The session holds 2 of at most 4 positions and cannot take 3 more.", full.Message);
        using (var canceled = new CancellationTokenSource())
        {
            await canceled.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => session.ForwardAsync(new float[2 * width], 1, canceled.Token).AsTask());
        }

        Assert.Equal(2, session.Position);
        await StepBothAsync(session, expected, Hidden(random, 2, 2, fixture), 2);
        Assert.Equal(4, session.Position);
    }

    [Fact]
    public async Task A_disposed_session_refuses_steps_and_disposing_twice_is_harmless()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        var session = await subject.Blocks.OpenSessionAsync(1, 4, Ct).AsTask().WaitAsync(Bound, Ct);
        await session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct).AsTask().WaitAsync(Bound, Ct);
        await session.DisposeAsync();
        await session.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => session.ForwardAsync(new float[fixture.Config.HiddenSize], 1, Ct).AsTask());
    }

    [Fact]
    public async Task A_training_pass_with_deep_prompts_and_lora_equals_the_reference_forward_and_backward()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        using var reference = fixture.CreateBlocks();
        var config = fixture.Config;
        var random = new Random(34);
        var shape = new Execution.LoraWeights(config, new Models.BlockRange(0, config.NumLayers), 2, 0.5f, [Execution.LoraTarget.Query, Execution.LoraTarget.Down]);
        var lora = new Execution.LoraWeights(config, shape.Blocks, 2, 0.5f, shape.Targets, Hidden(random, 1, shape.Values.Length / config.HiddenSize, fixture));
        var adaptation = new Execution.BlockAdaptation { Lora = lora, PromptLength = 2, Prompts = Hidden(random, config.NumLayers * 2, 2, fixture) };
        var input = Hidden(random, 2, 4, fixture);
        var outputGradient = Hidden(random, 2, 4, fixture);
        async Task<(float[] Out, float[] Grad, Execution.BlockGradients Adaptation)> RunAsync(ITransformerBlocks blocks)
        {
            var hidden = input.ToArray();
            using var activations = await blocks.ForwardAsync(hidden, 2, 4, adaptation, Ct).AsTask().WaitAsync(Bound, Ct);
            var gradients = outputGradient.ToArray();
            var adaptationGradients = new Execution.BlockGradients { Prompts = new float[adaptation.Prompts.Length], Lora = lora.CreateZeros() };
            await blocks.BackwardAsync(activations, gradients, adaptationGradients, Ct).AsTask().WaitAsync(Bound, Ct);
            return (hidden, gradients, adaptationGradients);
        }

        var expected = await RunAsync(reference);
        var actual = await RunAsync(subject.Blocks);
        AssertClose(expected.Out, actual.Out, Tolerance);
        AssertClose(expected.Grad, actual.Grad, Tolerance);
        AssertClose(expected.Adaptation.Prompts.ToArray(), actual.Adaptation.Prompts.ToArray(), Tolerance);
        AssertClose(expected.Adaptation.Lora!.Values.ToArray(), actual.Adaptation.Lora!.Values.ToArray(), 10 * Tolerance);
    }

    [Fact]
    public async Task Bad_training_inputs_are_refused_before_anything_runs()
    {
        using var fixture = Fixture();
        await using var subject = await CreateAsync(fixture);
        var h = fixture.Config.HiddenSize;
        var wrongPrompts = new Execution.BlockAdaptation { PromptLength = 2, Prompts = new float[h] };
        var prompts = await Assert.ThrowsAsync<ArgumentException>(async () => await subject.Blocks.ForwardAsync(new float[2 * h], 1, 2, wrongPrompts, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Contains("Deep prompts hold", prompts.Message, StringComparison.Ordinal);
        var tooLong = new Execution.BlockAdaptation { PromptLength = 3, Prompts = new float[fixture.Config.NumLayers * 3 * h] };
        await Assert.ThrowsAsync<ArgumentException>(async () => await subject.Blocks.ForwardAsync(new float[2 * h], 1, 2, tooLong, Ct).AsTask().WaitAsync(Bound, Ct));

        using var activations = await subject.Blocks.ForwardAsync(new float[2 * h], 1, 2, null, Ct).AsTask().WaitAsync(Bound, Ct);
        var shortGradient = await Assert.ThrowsAsync<ArgumentException>(async () => await subject.Blocks.BackwardAsync(activations, new float[h], null, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"hold {h} values"), shortGradient.Message, StringComparison.Ordinal);
        var nan = new float[2 * h];
        nan[3] = float.NaN;
        await Assert.ThrowsAsync<ArgumentException>(async () => await subject.Blocks.BackwardAsync(activations, nan, null, Ct).AsTask().WaitAsync(Bound, Ct));

        // Prompt gradients asked of a pass that had no prompts.
        var unwanted = new Execution.BlockGradients { Prompts = new float[h] };
        await Assert.ThrowsAsync<ArgumentException>(async () => await subject.Blocks.BackwardAsync(activations, new float[2 * h], unwanted, Ct).AsTask().WaitAsync(Bound, Ct));

        // The refusals left nothing broken: a good backward pass still runs.
        await subject.Blocks.BackwardAsync(activations, new float[2 * h], null, Ct).AsTask().WaitAsync(Bound, Ct);
    }

    /// <summary>The model every test runs: 4 blocks, GQA, fp32.</summary>
    private protected static RandomModelFixture Fixture() => new(TensorDType.F32, tied: false, layers: 4);

    private static float[] Hidden(Random random, int batch, int tokens, RandomModelFixture fixture)
    {
        var values = new float[batch * tokens * fixture.Config.HiddenSize];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (random.NextSingle() - 0.5f) * 2f;
        }

        return values;
    }

    private async Task StepBothAsync(ITransformerSession session, ITransformerSession expected, float[] input, int tokens)
    {
        var ours = input.ToArray();
        var theirs = input.ToArray();
        await session.ForwardAsync(ours, tokens, Ct).AsTask().WaitAsync(Bound, Ct);
        await expected.ForwardAsync(theirs, tokens, Ct);
        AssertClose(theirs, ours, Tolerance);
    }

    private static void AssertClose(float[] expected, float[] actual, float tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"value {i}: expected {expected[i]}, got {actual[i]}");
        }
    }

    /// <summary>The blocks under test and what must be released with them.</summary>
    /// <param name="Blocks">The blocks.</param>
    /// <param name="Owned">Released, in order, when the test ends.</param>
    protected sealed record BlocksUnderTest(ITransformerBlocks Blocks, params IAsyncDisposable[] Owned) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            foreach (var owned in Owned)
            {
                await owned.DisposeAsync();
            }
        }
    }
}
