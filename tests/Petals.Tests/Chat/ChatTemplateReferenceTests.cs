using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Petals.Chat;

namespace Petals.Tests.Chat;

/// <summary>
/// Real chat templates (Llama 2/3.x, Mistral, Mixtral, Zephyr, Gemma, Phi-3, ChatML, Qwen, DeepSeek…) rendered on varied
/// conversations must give exactly the text @huggingface/jinja gives, or an error where it raised one
/// (fixtures: tests/reference/make_chat_template_fixtures.mjs).
/// </summary>
public sealed class ChatTemplateReferenceTests
{
    private static readonly JsonSerializerOptions Readable = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string FixtureDirectory => Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat-templates");

    public static TheoryData<string> Templates()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(FixtureDirectory, "*.json").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileNameWithoutExtension(file));
        }

        return data;
    }

    [Fact]
    public void FixturesCoverTheTemplateFamiliesOfTheIssue()
    {
        var names = Templates().Select(row => row.Data).ToList();
        foreach (var family in new[] { "llama2", "llama3-", "llama3_1", "llama3_2", "mistral-7b", "mixtral", "zephyr", "chatml", "qwen2_5", "gemma", "phi-3" })
        {
            Assert.Contains(names, n => n.StartsWith(family, StringComparison.Ordinal));
        }
    }

    [Theory]
    [MemberData(nameof(Templates))]
    public void RendersExactlyAsTheReference(string name)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDirectory, name + ".json")));
        var root = document.RootElement;
        var template = ChatTemplate.Parse(root.GetProperty("template").GetString()!);
        string bos = root.GetProperty("bos_token").GetString()!;
        string eos = root.GetProperty("eos_token").GetString()!;
        var failures = new StringBuilder();
        int count = 0;
        foreach (var c in root.GetProperty("cases").EnumerateArray())
        {
            count++;
            var messages = c.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatTemplateMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!))
                .ToList();
            var variables = c.GetProperty("variables").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
            var options = new ChatTemplateOptions
            {
                AddGenerationPrompt = c.GetProperty("add_generation_prompt").GetBoolean(),
                BosToken = bos,
                EosToken = eos,
                Variables = variables,
            };
            string caseName = c.GetProperty("name").GetString()!;
            if (c.TryGetProperty("expected", out var expected))
            {
                try
                {
                    var actual = template.Render(messages, options);
                    if (actual != expected.GetString())
                    {
                        failures.AppendLine($"{caseName}:\n  expected {JsonSerializer.Serialize(expected.GetString(), Readable)}\n  actual   {JsonSerializer.Serialize(actual, Readable)}");
                    }
                }
                catch (ChatTemplateException e)
                {
                    failures.AppendLine($"{caseName}: expected text, got error {e.Message}");
                }
            }
            else
            {
                string error = c.GetProperty("error").GetString()!;
                bool raised = c.GetProperty("raised").GetBoolean();
                try
                {
                    var actual = template.Render(messages, options);
                    failures.AppendLine($"{caseName}: expected the error '{error}', got {JsonSerializer.Serialize(actual, Readable)}");
                }
                catch (ChatTemplateException e)
                {
                    if (raised && (!e.RaisedByTemplate || e.Message != error))
                    {
                        failures.AppendLine($"{caseName}: expected raise_exception('{error}'), got RaisedByTemplate={e.RaisedByTemplate} '{e.Message}'");
                    }
                    else if (!raised && e.RaisedByTemplate)
                    {
                        failures.AppendLine($"{caseName}: expected an interpreter error ('{error}'), got a raised one '{e.Message}'");
                    }
                }
            }
        }

        Assert.True(count > 20, $"{name}: only {count} cases");
        Assert.True(failures.Length == 0, $"{name}:\n{failures}");
    }
}
