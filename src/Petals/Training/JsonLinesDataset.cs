using System.Globalization;
using System.Text.Json;
using Petals.Tokenization;

namespace Petals.Training;

/// <summary>
/// Reads a fine-tuning data set from JSON lines: one object per line, <c>{"text": "…"}</c> for causal-LM data or
/// <c>{"text": "…", "label": 0}</c> for classification (a non-negative integer). Blank lines are skipped.
/// </summary>
public static class JsonLinesDataset
{
    /// <summary>Reads and tokenises <paramref name="path"/>.</summary>
    /// <param name="path">The JSON-lines file (UTF-8).</param>
    /// <param name="tokenizer">The model's tokenizer; special tokens are added as it says (BOS).</param>
    /// <param name="sequenceLength">Examples are truncated to this many tokens; at least 2.</param>
    /// <returns>The examples in file order.</returns>
    /// <exception cref="InvalidDataException">A line is not an object with a string <c>text</c> (and an integer <c>label</c>
    /// when present), the labels are on some lines only, a text has no token besides BOS, or the file has no example; the
    /// message names the file and the 1-based line.</exception>
    public static IReadOnlyList<TextExample> Load(string path, ITokenizer tokenizer, int sequenceLength)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceLength, 2);
        using var reader = new StreamReader(path);
        return Parse(reader, path, tokenizer, sequenceLength);
    }

    /// <summary>Reads and tokenises JSON lines from <paramref name="reader"/>; see <see cref="Load"/>.</summary>
    /// <param name="reader">The text.</param>
    /// <param name="source">The name used in errors.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="sequenceLength">Examples are truncated to this many tokens; at least 2.</param>
    /// <returns>The examples in order.</returns>
    /// <exception cref="InvalidDataException">A line is malformed; the message names <paramref name="source"/> and the line.</exception>
    public static IReadOnlyList<TextExample> Parse(TextReader reader, string source, ITokenizer tokenizer, int sequenceLength)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceLength, 2);
        var examples = new List<TextExample>();
        var lineNumber = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            string text;
            int? label = null;
            try
            {
                using var document = JsonDocument.Parse(line);
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                {
                    throw Bad(source, lineNumber, $"expected a JSON object, found {root.ValueKind}");
                }

                if (!root.TryGetProperty("text", out var textElement) || textElement.ValueKind != JsonValueKind.String)
                {
                    throw Bad(source, lineNumber, "expected a string property \"text\"");
                }

                text = textElement.GetString()!;
                if (root.TryGetProperty("label", out var labelElement))
                {
                    if (labelElement.ValueKind != JsonValueKind.Number || !labelElement.TryGetInt32(out var value) || value < 0)
                    {
                        throw Bad(source, lineNumber, $"\"label\" must be a non-negative integer, not {labelElement.GetRawText()}");
                    }

                    label = value;
                }
            }
            catch (JsonException e)
            {
                throw Bad(source, lineNumber, "not valid JSON: " + e.Message, e);
            }

            if (examples.Count > 0 && examples[0].Label.HasValue != label.HasValue)
            {
                throw Bad(source, lineNumber, label.HasValue
                    ? $"has a \"label\" but line {examples[0].LineNumber} has none; label all lines or none"
                    : $"has no \"label\" but line {examples[0].LineNumber} has one; label all lines or none");
            }

            var ids = tokenizer.Encode(text, addSpecialTokens: true);
            var withoutBos = tokenizer.AddBosToken && tokenizer.BosTokenId is not null ? ids.Length - 1 : ids.Length;
            if (withoutBos < 1 || ids.Length < 2)
            {
                throw Bad(source, lineNumber, "the text holds no token to train on");
            }

            examples.Add(new TextExample(ids.Length > sequenceLength ? ids[..sequenceLength] : ids, label, lineNumber));
        }

        if (examples.Count == 0)
        {
            throw new InvalidDataException($"{source}: no example (every line is blank).");
        }

        return examples;
    }

    private static InvalidDataException Bad(string source, int line, string what, Exception? inner = null) =>
        new(string.Create(CultureInfo.InvariantCulture, $"{source}:{line}: {what}."), inner);
}
