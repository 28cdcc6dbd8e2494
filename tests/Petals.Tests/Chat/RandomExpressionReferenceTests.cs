using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Petals.Chat;

namespace Petals.Tests.Chat;

/// <summary>
/// A differential test: 1,200 random expressions and statements from a small grammar (operators, filters, tests, methods,
/// indexing on mixed types), rendered by @huggingface/jinja (fixtures/chat-templates/random-expressions.jsonc). The same
/// text where the reference rendered, a <see cref="ChatTemplateException"/> where it failed.
/// </summary>
public sealed class RandomExpressionReferenceTests
{
    private static readonly JsonSerializerOptions Readable = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [Fact]
    public void EveryRandomExpressionBehavesAsInTheReference()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat-templates", "random-expressions.jsonc")));
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

        Assert.True(rendered > 300 && failed > 100, $"rendered {rendered}, failed {failed}");
        Assert.True(failures.Length == 0, failures.ToString());
    }
}
