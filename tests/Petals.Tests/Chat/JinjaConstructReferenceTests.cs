using System.Text.Encodings.Web;
using System.Text.Json;
using Petals.Chat;

namespace Petals.Tests.Chat;

/// <summary>
/// Every construct of the Jinja subset on its own (whitespace control, operators, members and slices, string and mapping
/// methods, filters, tests, loops, assignment and scoping, macros, call and filter blocks, globals, syntax errors), rendered
/// by @huggingface/jinja: the same text, or an error where the reference failed (fixtures/chat-templates/constructs.jsonc).
/// </summary>
public sealed class JinjaConstructReferenceTests
{
    private static readonly JsonSerializerOptions Readable = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static TheoryData<int> Cases()
    {
        var data = new TheoryData<int>();
        int count = Load().RootElement.GetProperty("cases").GetArrayLength();
        for (int i = 0; i < count; i++)
        {
            data.Add(i);
        }

        return data;
    }

    private static JsonDocument Load() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat-templates", "constructs.jsonc")));

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersAsTheReference(int index)
    {
        using var document = Load();
        var root = document.RootElement;
        var c = root.GetProperty("cases")[index];
        string source = c.GetProperty("template").GetString()!;
        var options = new ChatTemplateOptions
        {
            Variables = root.GetProperty("data").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone()),
        };
        if (c.TryGetProperty("expected", out var expected))
        {
            var actual = ChatTemplate.Parse(source).Render([], options);
            Assert.True(actual == expected.GetString(), $"{source}\n expected {JsonSerializer.Serialize(expected.GetString(), Readable)}\n actual   {JsonSerializer.Serialize(actual, Readable)}");
        }
        else
        {
            var error = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(source).Render([], options));
            Assert.Equal(c.GetProperty("raised").GetBoolean(), error.RaisedByTemplate);
            if (error.RaisedByTemplate)
            {
                Assert.Equal(c.GetProperty("error").GetString(), error.Message);
            }
            else
            {
                Assert.NotNull(error.Line);
                Assert.NotNull(error.Column);
            }
        }
    }
}
