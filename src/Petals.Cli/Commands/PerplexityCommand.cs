using System.CommandLine;
using System.Diagnostics;
using System.Globalization;

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
        var command = new Command("perplexity", "Mean negative log-likelihood (nats per token) of a text: BOS + text, every token after BOS predicted.")
        {
            model, textFile, output, threads,
        };

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var path = parse.GetValue(textFile)!;
            var text = await File.ReadAllTextAsync(path, ct).ConfigureAwait(false);
            var load = Stopwatch.StartNew();
            using var lm = ModelOptions.LoadLocal(parse.GetValue(model)!, parse.GetValue(threads));
            context.Info($"loaded {lm.Config.NumLayers} blocks", load);
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
            var result = await lm.ComputeNegativeLogLikelihoodAsync(ids, ct).ConfigureAwait(false);
            context.Info(string.Create(CultureInfo.InvariantCulture, $"scored {ids.Length} tokens"), timer);
            if (ModelOptions.IsJson(parse.GetValue(output)))
            {
                context.WriteJsonLine(w =>
                {
                    w.WriteStartObject();
                    w.WriteNumber("nll", result.MeanNll);
                    w.WriteNumber("tokens", result.PredictedTokens);
                    w.WriteEndObject();
                });
            }
            else
            {
                await context.Output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"nll {result.MeanNll:F4} nats/token over {result.PredictedTokens} predicted tokens (perplexity {result.Perplexity:F3})")).ConfigureAwait(false);
            }

            return 0;
        }, cancellationToken));
        return command;
    }
}
