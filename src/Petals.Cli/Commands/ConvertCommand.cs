using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Petals.Formats;
using Petals.Tokenization;

namespace Petals.Cli.Commands;

/// <summary><c>petals convert</c>: GGUF file to Hugging Face directory.</summary>
internal static class ConvertCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Option<string>("--model") { Description = "The .gguf file to convert.", Required = true };
        var outDir = new Option<string>("--out") { Description = "The output directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).", Required = true };
        var command = new Command("convert", "Convert a GGUF model into a Hugging Face directory that gives the same logits.") { model, outDir };
        command.SetAction((parse, cancellationToken) => context.RunAsync(ct =>
        {
            var input = parse.GetValue(model)!;
            var output = parse.GetValue(outDir)!;
            var timer = Stopwatch.StartNew();
            var lastPercent = -1;
            var options = new GgufConversionOptions
            {
                // Progress on stderr every 10% of the bytes.
                Progress = new SynchronousProgress<ModelConversionProgress>(p =>
                {
                    var percent = p.BytesTotal == 0 ? 100 : (int)(p.BytesDone * 100 / p.BytesTotal);
                    if (percent / 10 != lastPercent / 10)
                    {
                        lastPercent = percent;
                        context.Info(string.Create(CultureInfo.InvariantCulture, $"{percent,3}% {p.TensorsDone}/{p.TensorsTotal} tensors"));
                    }
                }),
                WriteAdditionalFiles = (gguf, directory) =>
                {
                    if (gguf.Tokenizer.Tokens is null)
                    {
                        context.Info("the GGUF file has no embedded vocabulary: no tokenizer.json written");
                        return;
                    }

                    TokenizerLoader.WriteHuggingFaceFiles(gguf, directory);
                },
            };
            var config = ModelConverter.ConvertGgufToHuggingFace(input, output, options, ct);
            context.Info(string.Create(CultureInfo.InvariantCulture,
                $"wrote {output}: {config.NumLayers} blocks, hidden {config.HiddenSize}, vocab {config.VocabSize}"), timer);
            return Task.FromResult(0);
        }, cancellationToken));
        return command;
    }

    /// <summary>Reports on the caller's thread (Progress&lt;T&gt; would post to the thread pool and reorder lines).</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
