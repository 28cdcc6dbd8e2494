using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Petals.Execution;
using Petals.Generation;
using Petals.Client;
using Petals.Inference;

namespace Petals.Cli.Commands;

/// <summary><c>petals perplexity</c>: teacher-forced mean negative log-likelihood of a text.</summary>
internal static class PerplexityCommand
{
    public static Command Create(CliContext context)
    {
        var model = ModelOptions.Model();
        var threads = ModelOptions.Threads();
        var textFile = new Option<string>("--text-file") { Description = "A UTF-8 text file to score.", Required = true };
        var output = ModelOptions.Output();
        var quant = QuantizationOptions.Quant("the blocks");
        var tuned = GenerateCommand.TunedOption();
        var source = new BlocksSourceOptions();
        var command = new Command("perplexity", "Mean negative log-likelihood (nats per token) of a text: BOS + text, every token after BOS predicted (teacher-forced), with the blocks in this process (quantized with --quant), on --peers, or in the swarm found through --initial-peers.")
        {
            model, textFile, output, threads, quant, tuned,
        };
        foreach (var option in source.All)
        {
            command.Options.Add(option);
        }

        command.Validators.Add(result =>
        {
            source.Validate(result);
            if (result.GetResult(quant) is not null && (result.GetResult(source.Peers) is not null || result.GetResult(source.InitialPeers) is not null))
            {
                result.AddError("--quant quantizes the blocks run in this process; with --peers or --initial-peers the servers choose theirs (petals serve --quant).");
            }
        });

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var quantization = QuantizationOptions.ParseQuant(parse.GetValue(quant));
            var path = parse.GetValue(textFile)!;
            var text = await File.ReadAllTextAsync(path, ct).ConfigureAwait(false);
            var load = Stopwatch.StartNew();
            var modelPath = parse.GetValue(model)!;
            await using var opened = await source.OpenAsync(context, parse, modelPath, () => ModelOptions.LoadLocal(modelPath, parse.GetValue(threads), quantization), ct).ConfigureAwait(false);
            var lm = opened.Model;
            var weights = WeightsOf(lm);
            var served = opened.IsRemote ? RemoteQuantization(lm) : weights?.Quantization ?? "none";
            context.Info(opened.IsRemote
                ? $"loaded {lm.Config.NumLayers} remote blocks, weights {served}"
                : weights is null
                ? $"loaded {lm.Config.NumLayers} blocks (--quant {quantization}; the executor reports no weight storage)"
                : string.Create(CultureInfo.InvariantCulture, $"loaded {lm.Config.NumLayers} blocks, weights {served}: {weights.WeightBytes} bytes of linear-layer weights (--quant {quantization})"), load);
            var tokenizer = lm.Tokenizer!;
            var body = tokenizer.Encode(text, addSpecialTokens: false);
            int[] ids;
            if (tokenizer.BosTokenId is { } bos)
            {
                ids = new int[body.Length + 1];
                ids[0] = bos;
                body.CopyTo(ids, 1);
            }
            else
            {
                ids = body;
            }

            if (ids.Length < 2)
            {
                throw new ArgumentException($"'{path}' holds too little text to score: at least one token besides BOS is needed.");
            }

            var timer = Stopwatch.StartNew();
            var result = parse.GetValue(tuned) is { } tunedDir
                ? await GenerateCommand.LoadTuned(context, lm, tunedDir).ComputeNegativeLogLikelihoodAsync(ids, ct).ConfigureAwait(false)
                : await lm.ComputeNegativeLogLikelihoodAsync(ids, ct).ConfigureAwait(false);
            context.Info(string.Create(CultureInfo.InvariantCulture, $"scored {ids.Length} tokens"), timer);
            if (ModelOptions.IsJson(parse.GetValue(output)))
            {
                context.WriteJsonLine(w =>
                {
                    w.WriteStartObject();
                    w.WriteNumber("nll", result.MeanNll);
                    w.WriteNumber("tokens", result.PredictedTokens);
                    w.WriteNumber("perplexity", result.Perplexity);
                    w.WriteString("quant", quantization.Value);
                    w.WriteString("weights", served);
                    if (weights is null)
                    {
                        w.WriteNull("weight_bytes");
                    }
                    else
                    {
                        w.WriteNumber("weight_bytes", weights.WeightBytes);
                    }

                    w.WriteEndObject();
                });
            }
            else
            {
                await context.Output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"nll {result.MeanNll:F4} nats/token over {result.PredictedTokens} predicted tokens (perplexity {result.Perplexity:F3}; quant {quantization}, weights {served})")).ConfigureAwait(false);
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>The quantizations the servers of <paramref name="lm"/>'s remote blocks announce, joined by '+' when they differ.</summary>
    private static string RemoteQuantization(CausalLanguageModel lm) =>
        lm.Blocks is RemoteTransformerBlocks remote
            ? string.Join("+", remote.Spans.Select(s => s.Info.Quantization ?? "unknown").Distinct(StringComparer.Ordinal))
            : "unknown";

    /// <summary>
    /// What the executors of <paramref name="lm"/>'s local blocks report about their weight storage (quantizations joined
    /// by '+' when they differ, bytes summed), or null when none reports.
    /// </summary>
    private static ExecutorWeightsInfo? WeightsOf(CausalLanguageModel lm)
    {
        if (lm.Blocks is not LocalTransformerBlocks local)
        {
            return null;
        }

        var infos = local.Executors.Select(e => e.GetService(typeof(ExecutorWeightsInfo)) as ExecutorWeightsInfo).OfType<ExecutorWeightsInfo>().ToArray();
        if (infos.Length == 0)
        {
            return null;
        }

        var bytes = new Dictionary<Petals.Tensors.TensorDType, long>();
        foreach (var (dtype, count) in infos.SelectMany(i => i.BytesByDType))
        {
            bytes[dtype] = bytes.GetValueOrDefault(dtype) + count;
        }

        return new ExecutorWeightsInfo(string.Join("+", infos.Select(i => i.Quantization).Distinct(StringComparer.Ordinal)), bytes);
    }
}
