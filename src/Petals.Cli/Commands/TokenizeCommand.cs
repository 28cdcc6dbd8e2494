using System.CommandLine;
using System.Text.Json;
using Petals.Tokenization;

namespace Petals.Cli.Commands;

/// <summary><c>petals tokenize</c>: text to token ids.</summary>
internal static class TokenizeCommand
{
    public static Command Create(CliContext context)
    {
        var tokenizerPath = new Option<string>("--tokenizer") { Description = "A directory with tokenizer.json, a tokenizer.json file, or a .gguf file.", Required = true };
        var text = new Option<string?>("--text") { Description = "The text to tokenize." };
        var inputFile = new Option<string?>("--input-file") { Description = "A JSON-lines file of {\"text\": ...} objects; prints one {\"ids\": [...]} line per line." };
        var noSpecial = new Option<bool>("--no-special") { Description = "Do not add the special tokens the tokenizer adds by itself (BOS)." };
        var output = ModelOptions.Output();
        var command = new Command("tokenize", "Tokenize text exactly as the model's tokenizer does.") { tokenizerPath, text, inputFile, noSpecial, output };
        command.Validators.Add(result =>
        {
            if ((result.GetValue(text) is null) == (result.GetValue(inputFile) is null))
            {
                result.AddError("Give exactly one of --text and --input-file.");
            }
        });

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var tokenizer = TokenizerLoader.Load(parse.GetValue(tokenizerPath)!);
            var addSpecial = !parse.GetValue(noSpecial);
            var json = ModelOptions.IsJson(parse.GetValue(output));
            if (parse.GetValue(text) is { } single)
            {
                var ids = tokenizer.Encode(single, addSpecial);
                if (json)
                {
                    context.WriteJsonLine(w =>
                    {
                        w.WriteStartObject();
                        GenerateCommand.WriteIds(w, "ids", ids);
                        w.WriteEndObject();
                    });
                }
                else
                {
                    await context.Output.WriteLineAsync(string.Join(' ', ids)).ConfigureAwait(false);
                }

                return 0;
            }

            var path = parse.GetValue(inputFile)!;
            var lineNumber = 0;
            using var reader = new StreamReader(path);
            while (await reader.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
            {
                lineNumber++;
                if (line.Length == 0)
                {
                    continue;
                }

                string lineText;
                try
                {
                    using var doc = JsonDocument.Parse(line);
                    if (doc.RootElement.ValueKind != JsonValueKind.Object
                        || !doc.RootElement.TryGetProperty("text", out var t)
                        || t.ValueKind != JsonValueKind.String)
                    {
                        throw new InvalidDataException($"{path}:{lineNumber}: expected an object with a string field 'text'.");
                    }

                    lineText = t.GetString()!;
                }
                catch (JsonException ex)
                {
                    throw new InvalidDataException($"{path}:{lineNumber}: invalid JSON: {ex.Message}", ex);
                }

                var ids = tokenizer.Encode(lineText, addSpecial);
                context.WriteJsonLine(w =>
                {
                    w.WriteStartObject();
                    GenerateCommand.WriteIds(w, "ids", ids);
                    w.WriteEndObject();
                });
            }

            return 0;
        }, cancellationToken));
        return command;
    }
}
