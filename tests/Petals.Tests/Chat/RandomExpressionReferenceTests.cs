using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Petals.Chat;

namespace Petals.Tests.Chat;

/// <summary>
/// Differential tests against @huggingface/jinja: 1,200 random expressions and statements from a small grammar (operators,
/// filters, tests, methods, indexing on mixed types; random-expressions.jsonc) and 500 random layouts (text, spaces, tabs
/// and line feeds around tags with random whitespace control, comments, nested blocks; random-layouts.jsonc). The same
/// text where the reference rendered, a <see cref="ChatTemplateException"/> where it failed.
/// </summary>
public sealed class RandomExpressionReferenceTests
{
    private static readonly JsonSerializerOptions Readable = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [Theory]
    [InlineData("random-expressions", 300, 100)]
    [InlineData("random-layouts", 400, 0)]
    public void EveryRandomTemplateBehavesAsInTheReference(string fixture, int minRendered, int minFailed)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat-templates", fixture + ".jsonc")));
        var root = document.RootElement;
        var options = new ChatTemplateOptions
        {
            Variables = root.GetProperty("data").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone()),
        };
        var failures = new StringBuilder();
        int rendered = 0, failed = 0;
        foreach (var c in root.GetProperty("cases").EnumerateArray())
        {
            string source = c.GetProperty("template").GetString()!;
            string? actual = null;
            ChatTemplateException? error = null;
            try
            {
                actual = ChatTemplate.Parse(source).Render([], options);
            }
            catch (ChatTemplateException e)
            {
                error = e;
            }

            if (c.TryGetProperty("expected", out var expected))
            {
                rendered++;
                if (actual != expected.GetString())
                {
                    failures.AppendLine($"{source}\n  expected {JsonSerializer.Serialize(expected.GetString(), Readable)}\n  actual   {(error is null ? JsonSerializer.Serialize(actual, Readable) : "error: " + error.Message)}");
                }
            }
            else
            {
                failed++;
                if (error is null || error.RaisedByTemplate)
                {
                    failures.AppendLine($"{source}\n  expected an error like '{c.GetProperty("error").GetString()}'\n  actual   {(error is null ? JsonSerializer.Serialize(actual, Readable) : "raised: " + error.Message)}");
                }
            }
        }

        Assert.True(rendered >= minRendered && failed >= minFailed, $"rendered {rendered}, failed {failed}");
        Assert.True(failures.Length == 0, failures.ToString());
    }
}
