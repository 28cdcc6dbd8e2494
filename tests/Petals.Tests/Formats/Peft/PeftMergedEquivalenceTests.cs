using Petals.Backends.Cpu;
using Petals.Execution;
using Petals.Formats;
using Petals.Formats.HuggingFace;
using Petals.Formats.Peft;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing;

namespace Petals.Tests.Formats.Peft;

/// <summary>
/// A PEFT adapter read from disk and applied by the executor (<see cref="LocalTransformerBlocks"/> named adapters) gives the
/// outputs of the same model whose weights were merged, <c>W + scale · B · A</c>, and written to a new model file.
/// </summary>
public sealed class PeftMergedEquivalenceTests : IDisposable
{
    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static TheoryData<string> Fixtures => ["stories260k-lora-qv-down", "stories260k-lora-all-bf16"];

    public void Dispose() => _dir.Dispose();

    [Theory]
    [MemberData(nameof(Fixtures))]
    public async Task Session_steps_with_the_adapter_equal_the_merged_models_and_differ_from_the_plain_ones(string fixture)
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var weights = ModelLoader.Open(TestData.Stories260KGguf);
        var lora = PeftAdapter.Load(Path.Combine(Path.GetDirectoryName(PeftAdapterTests.FixtureQvDown)!, fixture), weights.Config);
        var mergedPath = WriteMerged(weights, lora, Path.Combine(_dir.Path, "merged"));
        using var merged = ModelLoader.Open(mergedPath);
        using var adapted = Blocks(weights, new Dictionary<string, LoraWeights>(StringComparer.Ordinal) { ["style"] = lora });
        using var reference = Blocks(merged, null);

        const int Batch = 2;
        const int Prompt = 7;
        var h = weights.Config.HiddenSize;
        var rng = new Random(11);
        var prompt = Enumerable.Range(0, Batch * Prompt * h).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray();
        var steps = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, Batch * h).Select(_ => (float)((rng.NextDouble() * 2) - 1)).ToArray()).ToArray();

        var withAdapter = await RunAsync(adapted, new BlockAdaptation { Adapter = "style" }, prompt, steps);
        var withMerged = await RunAsync(reference, null, prompt, steps);
        var plain = await RunAsync(adapted, null, prompt, steps);

        var scale = withMerged.Max(MathF.Abs);
        var error = withAdapter.Zip(withMerged, (a, b) => MathF.Abs(a - b)).Max();
        var effect = plain.Zip(withMerged, (a, b) => MathF.Abs(a - b)).Max();
        TestContext.Current.TestOutputHelper?.WriteLine($"{fixture}: adapter vs merged max |diff| {error:E2}, adapter effect {effect:E2}, outputs up to {scale:F2}");
        Assert.True(error <= 1e-4f * Math.Max(1f, scale), $"adapter vs merged: max |diff| {error} (outputs up to {scale})");
        Assert.True(effect > 1000 * Math.Max(error, 1e-7f), $"the adapter changes outputs by only {effect} (error {error})");
    }

    [Fact]
    public async Task Generation_with_the_adapter_named_equals_generation_with_the_merged_model()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var weights = ModelLoader.Open(TestData.Stories260KGguf);
        var lora = PeftAdapter.Load(PeftAdapterTests.FixtureQvDown, weights.Config);
        using var merged = ModelLoader.Open(WriteMerged(weights, lora, Path.Combine(_dir.Path, "merged")));
        using var adapted = new CausalLanguageModel(LanguageModelHead.Load(weights), Blocks(weights, new Dictionary<string, LoraWeights>(StringComparer.Ordinal) { ["style"] = lora }));
        using var reference = new CausalLanguageModel(LanguageModelHead.Load(merged), Blocks(merged, null));

        int[] prompt = [1, 403, 407, 261, 378];
        var options = new GenerationOptions { MaxNewTokens = 40, StopTokenIds = [] };
        var fromAdapter = await Collect(adapted.GenerateAsync(prompt, options with { Adapter = "style" }, Ct));
        var fromMerged = await Collect(reference.GenerateAsync(prompt, options, Ct));
        var fromPlain = await Collect(adapted.GenerateAsync(prompt, options, Ct));
        Assert.Equal(40, fromAdapter.Count);
        Assert.Equal(fromMerged, fromAdapter);
        Assert.NotEqual(fromPlain, fromAdapter);
    }

    [Fact]
    public async Task Naming_an_adapter_the_local_blocks_do_not_hold_is_a_clear_error()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var weights = ModelLoader.Open(TestData.Stories260KGguf);
        var lora = PeftAdapter.Load(PeftAdapterTests.FixtureQvDown, weights.Config);
        using var model = new CausalLanguageModel(LanguageModelHead.Load(weights), Blocks(weights, new Dictionary<string, LoraWeights>(StringComparer.Ordinal) { ["style"] = lora }));
        var error = await Assert.ThrowsAsync<ArgumentException>(() => Collect(model.GenerateAsync([1, 403], new GenerationOptions { Adapter = "rhymes" }, Ct)));
        Assert.Contains("No adapter named 'rhymes'", error.Message, StringComparison.Ordinal);
        Assert.Contains("[style]", error.Message, StringComparison.Ordinal);

        var invalid = await Assert.ThrowsAsync<ArgumentException>(() => Collect(model.GenerateAsync([1, 403], new GenerationOptions { Adapter = "two words" }, Ct)));
        Assert.Contains("GenerationOptions.Adapter", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LoadLocal_reads_adapter_directories_and_names_a_broken_one()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 });
        using (var model = CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, factory, new Dictionary<string, string> { ["style"] = PeftAdapterTests.FixtureQvDown }))
        {
            Assert.Equal(["style"], Assert.IsType<LocalTransformerBlocks>(model.Blocks).Adapters);
            Assert.Equal(3, (await Collect(model.GenerateAsync([1, 403], new GenerationOptions { Adapter = "style", MaxNewTokens = 3, StopTokenIds = [] }, Ct))).Count);
        }

        var empty = Path.Combine(_dir.Path, "empty");
        Directory.CreateDirectory(empty);
        var error = Assert.Throws<InvalidOperationException>(() => CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, factory, new Dictionary<string, string> { ["style"] = empty }));
        Assert.Contains("'style'", error.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(empty, PeftAdapter.ConfigFileName), error.Message, StringComparison.Ordinal);
    }

    /// <summary>Writes the model with <c>W += Scale · B · A</c> (in float64) for every adapted layer, as a Hugging Face directory.</summary>
    internal static string WriteMerged(IModelWeights weights, LoraWeights lora, string directory)
    {
        var config = weights.Config;
        var tensors = new List<WeightTensor>();
        foreach (var name in weights.Tensors.Keys.Order(StringComparer.Ordinal))
        {
            var tensor = weights.GetFloatTensor(name);
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(tensor.Data.Span).ToArray();
            for (var b = 0; b < config.NumLayers; b++)
            {
                foreach (var t in lora.Targets)
                {
                    if (name != LlamaTensorNames.Block(b, TensorName(t)))
                    {
                        continue;
                    }

                    var rows = LoraTargets.OutFeatures(config, t);
                    var columns = LoraTargets.InFeatures(config, t);
                    var a = lora.A(b, t).Span;
                    var bm = lora.B(b, t).Span;
                    for (var o = 0; o < rows; o++)
                    {
                        for (var i = 0; i < columns; i++)
                        {
                            double sum = 0;
                            for (var r = 0; r < lora.Rank; r++)
                            {
                                sum += (double)bm[(o * lora.Rank) + r] * a[(r * columns) + i];
                            }

                            values[(o * columns) + i] = (float)(values[(o * columns) + i] + (lora.Scale * sum));
                        }
                    }
                }
            }

            tensors.Add(new WeightTensor(tensor.Descriptor with { DType = TensorDType.F32 }, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
        }

        HuggingFaceModelWriter.Write(directory, config, tensors);
        return directory;
    }

    private static string TensorName(LoraTarget target) => target switch
    {
        LoraTarget.Query => LlamaTensorNames.QProj,
        LoraTarget.Key => LlamaTensorNames.KProj,
        LoraTarget.Value => LlamaTensorNames.VProj,
        LoraTarget.Output => LlamaTensorNames.OProj,
        LoraTarget.Gate => LlamaTensorNames.GateProj,
        LoraTarget.Up => LlamaTensorNames.UpProj,
        _ => LlamaTensorNames.DownProj,
    };

    private static LocalTransformerBlocks Blocks(IModelWeights weights, IReadOnlyDictionary<string, LoraWeights>? adapters)
    {
        var executor = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 }).Create(weights, new BlockRange(0, weights.Config.NumLayers));
        return new LocalTransformerBlocks([executor], adapters: adapters);
    }

    private static async Task<float[]> RunAsync(LocalTransformerBlocks blocks, BlockAdaptation? adaptation, float[] prompt, float[][] steps)
    {
        var batch = 2;
        var tokens = prompt.Length / batch / blocks.Config.HiddenSize;
        var outputs = new List<float>();
        await using var session = await blocks.OpenSessionAsync(batch, tokens + steps.Length, adaptation, Ct);
        var hidden = (float[])prompt.Clone();
        await session.ForwardAsync(hidden, tokens, Ct);
        outputs.AddRange(hidden);
        foreach (var step in steps)
        {
            var h = (float[])step.Clone();
            await session.ForwardAsync(h, 1, Ct);
            outputs.AddRange(h);
        }

        return [.. outputs];
    }

    private static async Task<List<int>> Collect(IAsyncEnumerable<int> tokens)
    {
        var result = new List<int>();
        await foreach (var t in tokens)
        {
            result.Add(t);
        }

        return result;
    }
}
