using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Petals.Execution;
using Petals.Generation;
using Petals.Training;

namespace Petals.Cli.Commands;

/// <summary>
/// <c>petals finetune</c>: trains prompts, deep prompts or LoRA (and optionally a classification head) on a JSON-lines
/// data set, with the frozen blocks in this process, on --peers or in the swarm, and writes the parameters to --out.
/// </summary>
internal static class FinetuneCommand
{
    /// <summary>The sub-directory of <c>--out</c> that holds a trained LoRA (without a head) as a PEFT adapter.</summary>
    internal const string PeftDirectory = "peft";

    public static Command Create(CliContext context)
    {
        var model = ModelOptions.Model();
        var threads = ModelOptions.Threads();
        var data = new Option<string>("--data") { Description = "Training data: JSON lines {\"text\": …} (causal LM) or {\"text\": …, \"label\": N} (with --classes).", Required = true };
        var evalData = new Option<string?>("--eval-data") { Description = "Held-out data in the same format: its loss (and accuracy with --classes) is reported before and after training." };
        var mode = new Option<string>("--mode") { Description = "What to train: ptune (prefix embeddings), deep-ptune (a prefix per block too) or lora (client-owned LoRA sent with each call).", Required = true };
        mode.AcceptOnlyFromAmong("ptune", "deep-ptune", "lora");
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prefix length of ptune and deep-ptune.", DefaultValueFactory = _ => 16 };
        var loraRank = new Option<int>("--lora-rank") { Description = "LoRA rank r.", DefaultValueFactory = _ => 8 };
        var loraAlpha = new Option<float>("--lora-alpha") { Description = "LoRA alpha (the adapters' output is scaled by alpha / r).", DefaultValueFactory = _ => 16 };
        var loraTargets = new Option<string>("--lora-targets") { Description = "Adapted layers: comma-separated q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj (or q,k,v,o,gate,up,down), or all.", DefaultValueFactory = _ => "q_proj,v_proj" };
        var classes = new Option<int>("--classes") { Description = "Train a classification head of this many classes on labelled data (0: causal-LM objective).", DefaultValueFactory = _ => 0 };
        var pooling = new Option<string>("--pooling") { Description = "What the classification head reads: last (the last token's final-normed hidden state) or mean.", DefaultValueFactory = _ => "last" };
        pooling.AcceptOnlyFromAmong("last", "mean");
        var steps = new Option<int>("--steps") { Description = "Total optimizer steps (with --resume: the total including the steps already done).", DefaultValueFactory = _ => 100 };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per step.", DefaultValueFactory = _ => 8 };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per sequence (longer texts are truncated, shorter ones padded).", DefaultValueFactory = _ => 128 };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate.", DefaultValueFactory = _ => 1e-2 };
        var weightDecay = new Option<double>("--weight-decay") { Description = "AdamW decoupled weight decay.", DefaultValueFactory = _ => 0.0 };
        var clip = new Option<double>("--max-grad-norm") { Description = "Clip gradients to this global norm (0: off).", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<int>("--seed") { Description = "Seed of the initial parameters and of the data order.", DefaultValueFactory = _ => 0 };
        var outDir = new Option<string>("--out") { Description = "Directory for the trained parameters, optimizer state and finetune.json.", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue the training saved in --out (same data and options) up to --steps." };
        var output = ModelOptions.Output();
        var source = new BlocksSourceOptions();

        var command = new Command("finetune", "Fine-tune prompts, deep prompts or LoRA (and a classification head) on JSON-lines data; the frozen blocks run in this process, on --peers, or in the swarm found through --initial-peers.")
        {
            model, data, evalData, mode, promptTokens, loraRank, loraAlpha, loraTargets, classes, pooling, steps, batchSize, seqLen, lr, weightDecay, clip, seed, outDir, resume, output, threads,
        };
        foreach (var option in source.All)
        {
            command.Options.Add(option);
        }

        command.Validators.Add(result =>
        {
            source.Validate(result);

            Positive(result, promptTokens, 1);
            Positive(result, loraRank, 1);
            Positive(result, steps, 1);
            Positive(result, batchSize, 1);
            Positive(result, seqLen, 2);
            if (Given(result, classes, out var c) && c is < 0 or 1)
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"--classes must be 0 (causal LM) or at least 2, not {c}."));
            }

            if (Given(result, lr, out var rate) && !(rate > 0 && double.IsFinite(rate)))
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"--lr must be positive, not {rate}."));
            }

            if (Given(result, loraAlpha, out var alpha) && !(alpha > 0 && float.IsFinite(alpha)))
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"--lora-alpha must be positive, not {alpha}."));
            }

            if (Given(result, weightDecay, out var wd) && !(wd >= 0 && double.IsFinite(wd)))
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"--weight-decay must be 0 or more, not {wd}."));
            }

            if (Given(result, clip, out var norm) && !(norm >= 0 && double.IsFinite(norm)))
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"--max-grad-norm must be 0 or more, not {norm}."));
            }

            if (Given(result, loraTargets, out var targetList) && TryParseTargets(targetList, out _) is { } error)
            {
                result.AddError(error);
            }
        });

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var json = ModelOptions.IsJson(parse.GetValue(output));
            var modelPath = parse.GetValue(model)!;
            if (!File.Exists(modelPath) && !Directory.Exists(modelPath))
            {
                throw new FileNotFoundException($"Model '{modelPath}' does not exist.", modelPath);
            }

            var load = Stopwatch.StartNew();
            await using var opened = await source.OpenAsync(context, parse, modelPath, () => ModelOptions.LoadLocal(modelPath, parse.GetValue(threads)), ct).ConfigureAwait(false);
            var lm = opened.Model;
            context.Info($"loaded {lm.Config.NumLayers} blocks ({(opened.IsRemote ? "remote" : "local")}), hidden {lm.Config.HiddenSize}, vocab {lm.Config.VocabSize}", load);

            var tokenizer = lm.Tokenizer ?? throw new InvalidOperationException($"Model '{modelPath}' has no tokenizer.");
            var sequenceLength = parse.GetValue(seqLen);
            var padId = tokenizer.EosTokenId ?? 0;
            var train = JsonLinesDataset.Load(parse.GetValue(data)!, tokenizer, sequenceLength);
            var held = parse.GetValue(evalData) is { } evalPath ? JsonLinesDataset.Load(evalPath, tokenizer, sequenceLength) : null;
            var classCount = parse.GetValue(classes);
            CheckLabels(train, classCount, parse.GetValue(data)!);
            if (held is not null)
            {
                CheckLabels(held, classCount, parse.GetValue(evalData)!);
            }

            _ = TryParseTargets(parse.GetValue(loraTargets), out var targets);
            var dir = parse.GetValue(outDir)!;
            var options = new FineTuneOptions
            {
                Mode = parse.GetValue(mode) switch { "ptune" => FineTuneMode.PromptTuning, "deep-ptune" => FineTuneMode.DeepPromptTuning, _ => FineTuneMode.Lora },
                PromptTokens = parse.GetValue(promptTokens),
                LoraRank = parse.GetValue(loraRank),
                LoraAlpha = parse.GetValue(loraAlpha),
                LoraTargets = targets,
                ClassCount = classCount,
                Pooling = parse.GetValue(pooling) == "mean" ? ClassificationPooling.Mean : ClassificationPooling.LastToken,
                Seed = parse.GetValue(seed),
            };
            if (parse.GetValue(resume))
            {
                var saved = FineTuneCheckpoint.ReadOptions(dir);
                if (saved.Mode != options.Mode || saved.PrefixLength != options.PrefixLength || saved.ClassCount != options.ClassCount
                    || (options.Mode == FineTuneMode.Lora && (saved.LoraRank != options.LoraRank || !saved.LoraTargets.SequenceEqual(options.LoraTargets))))
                {
                    throw new ArgumentException($"--resume: the checkpoint in '{dir}' was trained with other options (mode, prompt tokens, LoRA rank or targets, classes); give the same ones.");
                }
            }

            var trainable = new TrainableModel(lm.Head, lm.Blocks, options);
            var trainer = new FineTuneTrainer(trainable, new DataLoader(train, parse.GetValue(batchSize), sequenceLength, parse.GetValue(seed), padId), new AdamWOptions
            {
                LearningRate = parse.GetValue(lr),
                WeightDecay = parse.GetValue(weightDecay),
                MaxGradientNorm = parse.GetValue(clip),
            });
            if (parse.GetValue(resume))
            {
                var at = trainer.Resume(dir);
                context.Info(string.Create(CultureInfo.InvariantCulture, $"resumed from step {at} of '{dir}'"));
            }

            var totalSteps = parse.GetValue(steps);
            if (trainer.Step >= totalSteps)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--steps {totalSteps}: the checkpoint in '{dir}' is already at step {trainer.Step}."));
            }

            var evalBatch = parse.GetValue(batchSize);
            DatasetEvaluation? baseline = null;
            DatasetEvaluation? before = null;
            try
            {
                if (held is not null)
                {
                    if (classCount == 0)
                    {
                        baseline = await trainable.EvaluateAsync(held, evalBatch, sequenceLength, padId, adapted: false, ct).ConfigureAwait(false);
                    }

                    before = await trainable.EvaluateAsync(held, evalBatch, sequenceLength, padId, adapted: true, ct).ConfigureAwait(false);
                    context.Info(Describe("held-out before", baseline, before));
                }

                double? initialLoss = null;
                var lastLoss = 0.0;
                var timer = Stopwatch.StartNew();
                long tokens = 0;
                var firstStep = trainer.Step;
                while (trainer.Step < totalSteps)
                {
                    var step = await trainer.StepAsync(ct).ConfigureAwait(false);
                    initialLoss ??= step.Loss;
                    lastLoss = step.Loss;
                    tokens += step.Tokens;
                    if (!double.IsFinite(step.Loss))
                    {
                        throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"The loss of step {step.Step} is {step.Loss}; lower --lr."));
                    }

                    if (json)
                    {
                        context.WriteJsonLine(w =>
                        {
                            w.WriteStartObject();
                            w.WriteNumber("step", step.Step);
                            w.WriteNumber("loss", Math.Round(step.Loss, 6));
                            w.WriteEndObject();
                        });
                    }
                    else
                    {
                        var done = (double)(step.Step - firstStep) / (totalSteps - firstStep);
                        var bar = new string('#', (int)(done * 30)).PadRight(30, '.');
                        context.Error.Write(string.Create(CultureInfo.InvariantCulture,
                            $"\rstep {step.Step}/{totalSteps} [{bar}] loss {step.Loss:F4} {tokens / Math.Max(1e-9, timer.Elapsed.TotalSeconds):F0} tokens/s"));
                    }
                }

                var seconds = timer.Elapsed.TotalSeconds;
                if (!json)
                {
                    context.Error.WriteLine();
                }

                var stepsRun = trainer.Step - firstStep;
                context.Info(string.Create(CultureInfo.InvariantCulture, $"trained {stepsRun} steps in {seconds:F2} s ({stepsRun / seconds:F2} steps/s, {tokens / seconds:F0} tokens/s)"));
                DatasetEvaluation? after = null;
                if (held is not null)
                {
                    after = await trainable.EvaluateAsync(held, evalBatch, sequenceLength, padId, adapted: true, ct).ConfigureAwait(false);
                    context.Info(Describe("held-out after", null, after));
                }

                var extra = new Dictionary<string, object>
                {
                    ["model"] = Path.GetFileName(Path.TrimEndingDirectorySeparator(modelPath)),
                    ["data"] = Path.GetFileName(parse.GetValue(data)!),
                    ["seq_len"] = sequenceLength,
                    ["batch_size"] = parse.GetValue(batchSize),
                    ["lr"] = parse.GetValue(lr),
                    ["seed"] = parse.GetValue(seed),
                    ["initial_loss"] = initialLoss!.Value,
                    ["final_loss"] = lastLoss,
                };
                trainer.Save(dir, extra);
                context.Info($"wrote {FineTuneCheckpoint.ParametersFile}, {FineTuneCheckpoint.OptimizerFile} and {FineTuneCheckpoint.DescriptionFile} to {dir}");
                if (trainable.Lora is { } lora && options.ClassCount == 0)
                {
                    // The trained LoRA alone is a PEFT adapter: servers can hold it (petals serve --adapters NAME=DIR/peft).
                    var peft = Path.Combine(dir, PeftDirectory);
                    Formats.Peft.PeftAdapter.Save(peft, lora, Path.GetFileName(Path.TrimEndingDirectorySeparator(modelPath)));
                    context.Info($"wrote the LoRA as a PEFT adapter to {peft} (servers hold it with petals serve --adapters NAME={peft})");
                }
                if (json)
                {
                    context.WriteJsonLine(w =>
                    {
                        w.WriteStartObject();
                        w.WriteNumber("initial_loss", Math.Round(initialLoss.Value, 6));
                        w.WriteNumber("final_loss", Math.Round(lastLoss, 6));
                        w.WriteNumber("steps", trainer.Step);
                        w.WriteNumber("steps_per_second", Math.Round(stepsRun / seconds, 4));
                        w.WriteNumber("tokens_per_second", Math.Round(tokens / seconds, 1));
                        if (baseline is not null)
                        {
                            w.WriteNumber("eval_loss_frozen", Math.Round(baseline.MeanLoss, 6));
                        }

                        if (before is not null && after is not null)
                        {
                            w.WriteNumber("eval_loss_before", Math.Round(before.MeanLoss, 6));
                            w.WriteNumber("eval_loss_after", Math.Round(after.MeanLoss, 6));
                            if (after.Accuracy is { } accuracy)
                            {
                                w.WriteNumber("eval_accuracy_before", Math.Round(before.Accuracy!.Value, 6));
                                w.WriteNumber("eval_accuracy_after", Math.Round(accuracy, 6));
                            }
                        }

                        w.WriteEndObject();
                    });
                }
            }
            catch (NotSupportedException e)
            {
                await context.Error.WriteLineAsync($"error: {e.Message}").ConfigureAwait(false);
                return CliContext.InputError;
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>Parses --lora-targets; returns an error message or null.</summary>
    internal static string? TryParseTargets(string? text, out IReadOnlyList<LoraTarget> targets)
    {
        targets = [];
        if (string.Equals(text?.Trim(), "all", StringComparison.Ordinal))
        {
            targets = LoraTargets.All;
            return null;
        }

        var list = new List<LoraTarget>();
        foreach (var raw in (text ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var name = raw is "q" or "k" or "v" or "o" ? raw + "_proj" : raw is "gate" or "up" or "down" ? raw + "_proj" : raw;
            if (!LoraTargets.TryParseModule(name, out var target))
            {
                return $"--lora-targets: unknown layer '{raw}'; use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj or all.";
            }

            if (list.Contains(target))
            {
                return $"--lora-targets names '{raw}' twice.";
            }

            list.Add(target);
        }

        if (list.Count == 0)
        {
            return "--lora-targets names no layer.";
        }

        targets = list;
        return null;
    }

    private static void Positive(System.CommandLine.Parsing.CommandResult result, Option<int> option, int least)
    {
        if (Given(result, option, out var value) && value < least)
        {
            result.AddError(string.Create(CultureInfo.InvariantCulture, $"{option.Name} must be at least {least}, not {value}."));
        }
    }

    /// <summary>The value of an option given once on the command line (a repeated or malformed one is reported by the parser itself).</summary>
    private static bool Given<T>(System.CommandLine.Parsing.CommandResult result, Option<T> option, out T value)
    {
        value = default!;
        if (result.GetResult(option) is not { } given || given.Tokens.Count != 1)
        {
            return false;
        }

        try
        {
            value = result.GetValue(option)!;
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static void CheckLabels(IReadOnlyList<TextExample> examples, int classCount, string path)
    {
        var labelled = examples[0].Label.HasValue;
        if (classCount > 0 && !labelled)
        {
            throw new InvalidDataException($"{path}: --classes {classCount} needs a \"label\" on every line (line {examples[0].LineNumber} has none).");
        }

        if (classCount == 0 && labelled)
        {
            throw new InvalidDataException($"{path}: the lines have labels; give --classes N to train a classification head.");
        }

        foreach (var e in examples)
        {
            if (e.Label is { } label && label >= classCount)
            {
                throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"{path}:{e.LineNumber}: label {label} is not below --classes {classCount}."));
            }
        }
    }

    private static string Describe(string what, DatasetEvaluation? frozen, DatasetEvaluation evaluation) =>
        string.Create(CultureInfo.InvariantCulture, $"{what}: loss {evaluation.MeanLoss:F4} over {evaluation.Count} terms")
        + (frozen is null ? string.Empty : string.Create(CultureInfo.InvariantCulture, $" (frozen model {frozen.MeanLoss:F4})"))
        + (evaluation.Accuracy is { } a ? string.Create(CultureInfo.InvariantCulture, $", accuracy {a:P1}") : string.Empty);
}
