using Petals.Backends.Cpu;
using Petals.Generation;
using Petals.Tokenization;
using Petals.Testing;
using Petals.Training;

namespace Petals.Tests.Training;

/// <summary>
/// The trainable model on the real stories260K blocks run locally (CPU executor, forward and backward): gradients of
/// every kind of parameter against central finite differences of the whole loss, a short training run, exact resume,
/// checkpoints, and the tuned session path agreeing with the stateless training pass.
/// </summary>
public sealed class TrainableModelTests
{
    private static readonly string[] Texts =
    [
        "Pim the little dragon went to the park. There Pim met a cat.",
        "Once upon a time, there was a girl.",
        "Pim was very happy. And Pim sang: \"Tip tap toe, home we go!\"",
    ];

    public static TheoryData<string> Modes => new() { "ptune", "deep_ptune", "lora", "classify", "classify_last" };

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task GradientsMatchFiniteDifferencesOfTheLoss(string mode)
    {
        using var lm = Load();
        var options = Options(mode) with { PromptTokens = 3, LoraTargets = [.. Execution.LoraTargets.All] };
        var model = new TrainableModel(lm.Head, lm.Blocks, options);
        // Make LoRA B non-zero so that A's gradient is not trivially zero.
        if (model.LoraParameter is { } lora)
        {
            var random = new Random(1);
            for (var i = 0; i < lora.Values.Length; i++)
            {
                lora.Values[i] += (float)((random.NextDouble() - 0.5) * 0.1);
            }
        }

        var batch = Batch(lm.Tokenizer!, mode.StartsWith("classify", StringComparison.Ordinal));
        await model.ComputeGradientsAsync(batch, TestContext.Current.CancellationToken);
        foreach (var parameter in model.Parameters)
        {
            // The five largest gradient entries of each parameter, and one with a small gradient.
            var order = Enumerable.Range(0, parameter.Values.Length).OrderByDescending(i => Math.Abs(parameter.Gradient[i])).ToArray();
            Assert.True(Math.Abs(parameter.Gradient[order[0]]) > 1e-5, $"{parameter.Name}: all gradients are zero");
            foreach (var index in order.Take(5).Append(order[order.Length / 2]))
            {
                var saved = parameter.Values[index];
                const float step = 1e-2f;
                parameter.Values[index] = saved + step;
                var plus = (await model.EvaluateAsync(batch, cancellationToken: TestContext.Current.CancellationToken)).Mean;
                parameter.Values[index] = saved - step;
                var minus = (await model.EvaluateAsync(batch, cancellationToken: TestContext.Current.CancellationToken)).Mean;
                parameter.Values[index] = saved;
                var expected = (plus - minus) / (2 * step);
                var actual = parameter.Gradient[index];
                Assert.True(Math.Abs(expected - actual) <= 2e-4 + (0.03 * Math.Abs(expected)), $"{mode} {parameter.Name}[{index}]: finite differences {expected}, backward {actual}");
            }
        }
    }

    [Fact]
    public async Task ShortTrainingLowersTheLoss()
    {
        using var lm = Load();
        var tokenizer = lm.Tokenizer!;
        var examples = JsonLinesDataset.Parse(new StringReader(string.Join('\n', Texts.Select(t => System.Text.Json.JsonSerializer.Serialize(new { text = t })))), "texts", tokenizer, 32);
        var model = new TrainableModel(lm.Head, lm.Blocks, new FineTuneOptions { Mode = FineTuneMode.DeepPromptTuning, PromptTokens = 4 });
        var trainer = new FineTuneTrainer(model, new DataLoader(examples, 3, 32, 0, 2), new AdamWOptions { LearningRate = 0.05 });
        var losses = new List<double>();
        for (var i = 0; i < 15; i++)
        {
            losses.Add((await trainer.StepAsync(TestContext.Current.CancellationToken)).Loss);
        }

        Assert.True(losses[^1] < 0.7 * losses[0], $"losses {string.Join(", ", losses.Select(l => l.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)))}");
    }

    [Theory]
    [InlineData("deep_ptune")]
    [InlineData("lora")]
    public async Task ResumingFromACheckpointEqualsAnUninterruptedRun(string mode)
    {
        using var lm = Load();
        using var dir = TestData.CreateTempDirectory();
        var examples = JsonLinesDataset.Parse(new StringReader(string.Join('\n', Texts.Select(t => System.Text.Json.JsonSerializer.Serialize(new { text = t })))), "texts", lm.Tokenizer!, 24);
        var options = Options(mode) with { Seed = 4 };
        var adam = new AdamWOptions { LearningRate = 0.01, WeightDecay = 0.01 };
        FineTuneTrainer Trainer() => new(new TrainableModel(lm.Head, lm.Blocks, options), new DataLoader(examples, 2, 24, 7, 2), adam);

        var straight = Trainer();
        for (var i = 0; i < 4; i++)
        {
            await straight.StepAsync(TestContext.Current.CancellationToken);
        }

        var first = Trainer();
        for (var i = 0; i < 2; i++)
        {
            await first.StepAsync(TestContext.Current.CancellationToken);
        }

        first.Save(dir.Path);
        var resumed = Trainer();
        Assert.Equal(2, resumed.Resume(dir.Path));
        var last = 0.0;
        for (var i = 0; i < 2; i++)
        {
            last = (await resumed.StepAsync(TestContext.Current.CancellationToken)).Loss;
        }

        Assert.Equal(4, resumed.Step);
        for (var p = 0; p < straight.Model.Parameters.Count; p++)
        {
            Assert.Equal(straight.Model.Parameters[p].Values, resumed.Model.Parameters[p].Values);
            Assert.Equal(straight.Optimizer.SecondMoments[p], resumed.Optimizer.SecondMoments[p]);
        }

        Assert.True(double.IsFinite(last));
    }

    [Fact]
    public async Task CheckpointsRoundTripTheParametersAndOptions()
    {
        using var lm = Load();
        using var dir = TestData.CreateTempDirectory();
        var options = new FineTuneOptions { Mode = FineTuneMode.Lora, LoraRank = 3, LoraAlpha = 6, LoraTargets = [Execution.LoraTarget.Up, Execution.LoraTarget.Query], ClassCount = 3, Pooling = ClassificationPooling.Mean };
        var model = new TrainableModel(lm.Head, lm.Blocks, options);
        var random = new Random(2);
        foreach (var p in model.Parameters)
        {
            for (var i = 0; i < p.Values.Length; i++)
            {
                p.Values[i] = (float)random.NextDouble();
            }
        }

        FineTuneCheckpoint.Save(dir.Path, model, optimizer: null, new Dictionary<string, object> { ["note"] = "x", ["initial_loss"] = 1.5 });

        var read = FineTuneCheckpoint.ReadOptions(dir.Path);
        Assert.Equal(options.Mode, read.Mode);
        Assert.Equal(3, read.LoraRank);
        Assert.Equal(6f, read.LoraAlpha);
        Assert.Equal(options.LoraTargets, read.LoraTargets);
        Assert.Equal(3, read.ClassCount);
        Assert.Equal(ClassificationPooling.Mean, read.Pooling);
        var loaded = new TrainableModel(lm.Head, lm.Blocks, read);
        FineTuneCheckpoint.LoadParameters(dir.Path, loaded);
        for (var p = 0; p < model.Parameters.Count; p++)
        {
            Assert.Equal(model.Parameters[p].Values, loaded.Parameters[p].Values);
        }

        using var description = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, FineTuneCheckpoint.DescriptionFile)));
        Assert.Equal("lora", description.RootElement.GetProperty("mode").GetString());
        Assert.Equal(1.5, description.RootElement.GetProperty("initial_loss").GetDouble());

        // Resuming needs the optimizer file; another shape is refused by name.
        var e = Assert.Throws<InvalidDataException>(() => { _ = FineTuneCheckpoint.LoadParameters(dir.Path, loaded, new AdamW(loaded.Parameters, new AdamWOptions())); });
        Assert.Contains(FineTuneCheckpoint.OptimizerFile, e.Message, StringComparison.Ordinal);
        var other = new TrainableModel(lm.Head, lm.Blocks, read with { LoraRank = 4 });
        e = Assert.Throws<InvalidDataException>(() => { _ = FineTuneCheckpoint.LoadParameters(dir.Path, other); });
        Assert.Contains("tensor 'lora'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ADirectoryWithoutACheckpointIsAClearError()
    {
        using var dir = TestData.CreateTempDirectory();
        var e = Assert.Throws<InvalidDataException>(() => { _ = FineTuneCheckpoint.ReadOptions(dir.Path); });
        Assert.Contains(FineTuneCheckpoint.ParametersFile, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("ptune")]
    [InlineData("deep_ptune")]
    [InlineData("lora")]
    public async Task TheTunedSessionScoresLikeTheTrainingPass(string mode)
    {
        using var lm = Load();
        var model = new TrainableModel(lm.Head, lm.Blocks, Options(mode) with { PromptTokens = 3 });
        var random = new Random(6);
        foreach (var p in model.Parameters)
        {
            for (var i = 0; i < p.Values.Length; i++)
            {
                p.Values[i] += (float)((random.NextDouble() - 0.5) * 0.2);
            }
        }

        var ids = lm.Tokenizer!.Encode(Texts[0], addSpecialTokens: true);
        var training = await model.EvaluateAsync(TrainingBatch.From([new TextExample(ids, null, 1)], ids.Length, 0), cancellationToken: TestContext.Current.CancellationToken);
        var frozen = await model.EvaluateAsync(TrainingBatch.From([new TextExample(ids, null, 1)], ids.Length, 0), adapted: false, TestContext.Current.CancellationToken);
        var session = await new TunedLanguageModel(model).ComputeNegativeLogLikelihoodAsync(ids, TestContext.Current.CancellationToken);

        Assert.Equal(training.Mean, session.MeanNll, 4);
        Assert.True(Math.Abs(training.Mean - frozen.Mean) > 1e-3, "the adaptation changed nothing");
        Assert.Equal((await lm.ComputeNegativeLogLikelihoodAsync(ids, TestContext.Current.CancellationToken)).MeanNll, frozen.Mean, 4);
    }

    [Fact]
    public async Task GenerationPassesTheServersAdapterNameWithTrainedPromptsAndRefusesItWithTrainedLora()
    {
        using var lm = Load();
        var ids = lm.Tokenizer!.Encode(Texts[0], addSpecialTokens: true);
        var options = new GenerationOptions { MaxNewTokens = 2, Adapter = "style" };
        var ct = TestContext.Current.CancellationToken;

        // Prompts and a servers' adapter combine: the name reaches the blocks, which hold no adapter of that name.
        var prompts = new TunedLanguageModel(new TrainableModel(lm.Head, lm.Blocks, Options("deep_ptune")));
        var missing = await Assert.ThrowsAsync<ArgumentException>(async () => await prompts.GenerateAsync(ids, options, ct).ToListAsync(ct));
        Assert.Contains("No adapter named 'style'", missing.Message, StringComparison.Ordinal);

        var lora = new TunedLanguageModel(new TrainableModel(lm.Head, lm.Blocks, Options("lora")));
        var both = await Assert.ThrowsAsync<ArgumentException>(async () => await lora.GenerateAsync(ids, options, ct).ToListAsync(ct));
        Assert.Contains("either the servers' adapter 'style' or its own LoRA weights", both.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABatchWithoutLabelsIsRefusedByAClassifier()
    {
        using var lm = Load();
        var model = new TrainableModel(lm.Head, lm.Blocks, new FineTuneOptions { ClassCount = 2, PromptTokens = 2 });
        var e = await Assert.ThrowsAsync<ArgumentException>(() => model.ComputeGradientsAsync(TrainingBatch.From([new TextExample([1, 5], null, 1)], 2, 0), TestContext.Current.CancellationToken));
        Assert.Contains("no labels", e.Message, StringComparison.Ordinal);
        e = await Assert.ThrowsAsync<ArgumentException>(() => model.ComputeGradientsAsync(TrainingBatch.From([new TextExample([1, 5], 2, 1)], 2, 0), TestContext.Current.CancellationToken));
        Assert.Contains("label 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadOptionsAreRefusedByName()
    {
        Assert.Contains("PromptTokens", Assert.Throws<ArgumentException>(() => new FineTuneOptions { PromptTokens = 0 }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("LoraRank", Assert.Throws<ArgumentException>(() => new FineTuneOptions { Mode = FineTuneMode.Lora, LoraRank = 0 }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("ClassCount", Assert.Throws<ArgumentException>(() => new FineTuneOptions { ClassCount = 1 }.Validate()).Message, StringComparison.Ordinal);
    }

    private static FineTuneOptions Options(string mode) => mode switch
    {
        "ptune" => new FineTuneOptions { Mode = FineTuneMode.PromptTuning, PromptTokens = 2 },
        "deep_ptune" => new FineTuneOptions { Mode = FineTuneMode.DeepPromptTuning, PromptTokens = 2 },
        "lora" => new FineTuneOptions { Mode = FineTuneMode.Lora, LoraRank = 2 },
        "classify" => new FineTuneOptions { Mode = FineTuneMode.DeepPromptTuning, PromptTokens = 2, ClassCount = 3, Pooling = ClassificationPooling.Mean },
        _ => new FineTuneOptions { Mode = FineTuneMode.Lora, LoraRank = 2, ClassCount = 3, Pooling = ClassificationPooling.LastToken },
    };

    private static TrainingBatch Batch(ITokenizer tokenizer, bool labelled)
    {
        var examples = Texts.Take(2).Select((t, i) => new TextExample(tokenizer.Encode(t, addSpecialTokens: true)[..10], labelled ? i + 1 : null, i + 1)).ToArray();
        examples[1] = examples[1] with { TokenIds = examples[1].TokenIds[..7] };
        return TrainingBatch.From(examples, 10, padId: 2);
    }

    private static CausalLanguageModel Load()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        return CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, new CpuBlockExecutorFactory());
    }
}
