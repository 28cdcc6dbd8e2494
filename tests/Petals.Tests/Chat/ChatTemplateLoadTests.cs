using System.Text.Json;
using Petals.Chat;
using Petals.Formats;
using Petals.Formats.Gguf;
using Petals.Testing;
using Petals.Tests.Formats;

namespace Petals.Tests.Chat;

/// <summary><see cref="ChatTemplate.Load"/>: tokenizer_config.json (string or named list), chat_template.jinja, GGUF metadata.</summary>
public sealed class ChatTemplateLoadTests
{
    private const string ChatMl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private static readonly ChatTemplateMessage[] Conversation = [new("user", "Hi")];

    private static void WriteConfig(string directory, object config) =>
        File.WriteAllText(Path.Combine(directory, "tokenizer_config.json"), JsonSerializer.Serialize(config));

    [Fact]
    public void ReadsTheStringTemplateOfAHuggingFaceDirectory()
    {
        using var dir = TestData.CreateTempDirectory();
        WriteConfig(dir.Path, new { bos_token = "<s>", chat_template = ChatMl });
        var template = ChatTemplate.Load(dir.Path);
        Assert.NotNull(template);
        Assert.False(template.IsPlain);
        Assert.Equal(ChatMl, template.Source);
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", template.Render(Conversation));
    }

    [Fact]
    public void ReadsTheConfigBesideAFileOfTheDirectory()
    {
        using var dir = TestData.CreateTempDirectory();
        WriteConfig(dir.Path, new { chat_template = "{{ messages[0].content }}!" });
        var template = ChatTemplate.Load(Path.Combine(dir.Path, "model.safetensors"));
        Assert.Equal("Hi!", template!.Render(Conversation));
    }

    [Fact]
    public void TakesTheDefaultOfANamedList()
    {
        using var dir = TestData.CreateTempDirectory();
        WriteConfig(dir.Path, new
        {
            chat_template = new object[]
            {
                new { name = "tool_use", template = "tools" },
                new { name = "default", template = "default {{ messages | length }}" },
                new { name = "rag", template = "rag" },
            },
        });
        Assert.Equal("default 1", ChatTemplate.Load(dir.Path)!.Render(Conversation));
    }

    [Fact]
    public void IsNullWhenTheModelHasNoTemplate()
    {
        using var dir = TestData.CreateTempDirectory();
        Assert.Null(ChatTemplate.Load(dir.Path));
        WriteConfig(dir.Path, new { bos_token = "<s>" });
        Assert.Null(ChatTemplate.Load(dir.Path));
        WriteConfig(dir.Path, new { chat_template = (string?)null });
        Assert.Null(ChatTemplate.Load(dir.Path));
        WriteConfig(dir.Path, new { chat_template = new[] { new { name = "tool_use", template = "x" } } });
        Assert.Null(ChatTemplate.Load(dir.Path));
    }

    [Fact]
    public void PrefersChatTemplateJinja()
    {
        using var dir = TestData.CreateTempDirectory();
        WriteConfig(dir.Path, new { chat_template = "from config" });
        File.WriteAllText(Path.Combine(dir.Path, "chat_template.jinja"), "from jinja file\n");
        Assert.Equal("from jinja file", ChatTemplate.Load(dir.Path)!.Render(Conversation));
    }

    [Fact]
    public void BadConfigsGetPreciseErrors()
    {
        using var dir = TestData.CreateTempDirectory();
        var path = Path.Combine(dir.Path, "tokenizer_config.json");
        File.WriteAllText(path, "{ \"chat_template\": ");
        var e = Assert.Throws<ModelFormatException>(() => ChatTemplate.Load(dir.Path));
        Assert.Equal(path, e.FilePath);

        WriteConfig(dir.Path, new { chat_template = 42 });
        e = Assert.Throws<ModelFormatException>(() => ChatTemplate.Load(dir.Path));
        Assert.Equal("chat_template", e.Field);

        WriteConfig(dir.Path, new { chat_template = new object[] { new { name = "default" } } });
        e = Assert.Throws<ModelFormatException>(() => ChatTemplate.Load(dir.Path));
        Assert.Contains("'name' and 'template'", e.Message, StringComparison.Ordinal);

        WriteConfig(dir.Path, new { chat_template = "line one\n{% if x %}never closed" });
        var t = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Load(dir.Path));
        Assert.Contains("tokenizer_config.json", t.Message, StringComparison.Ordinal);
        Assert.Equal(2, t.Line);
        Assert.Equal(1, t.Column);
    }

    [Fact]
    public void ReadsTheGgufMetadataKey()
    {
        using var dir = TestData.CreateTempDirectory();
        var path = new GgufTestWriter(3)
            .AddString("general.architecture", "llama")
            .AddString("tokenizer.chat_template", ChatMl)
            .Write(Path.Combine(dir.Path, "model.gguf"));
        var template = ChatTemplate.Load(path);
        Assert.Equal(ChatMl, template!.Source);
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n", template.Render(Conversation, new ChatTemplateOptions { AddGenerationPrompt = false }));
    }

    [Fact]
    public void GgufWithoutTheKeyOrWithTheWrongTypeOfValue()
    {
        using var dir = TestData.CreateTempDirectory();
        var none = new GgufTestWriter(2).AddString("general.architecture", "llama").Write(Path.Combine(dir.Path, "none.gguf"));
        Assert.Null(ChatTemplate.Load(none));

        // A GGUF decides by its own metadata, even with a tokenizer_config.json beside it.
        WriteConfig(dir.Path, new { chat_template = "config" });
        Assert.Null(ChatTemplate.Load(none));

        var wrong = new GgufTestWriter(3).AddU32("tokenizer.chat_template", 7).Write(Path.Combine(dir.Path, "wrong.gguf"));
        var e = Assert.Throws<ModelFormatException>(() => ChatTemplate.Load(wrong));
        Assert.Equal("tokenizer.chat_template", e.Field);
    }

    [Fact]
    public void ExportingAGgufTokenizerKeepsItsTemplate()
    {
        using var dir = TestData.CreateTempDirectory();
        string[] tokens = ["a", "b", "ab", "Ġ", "Ġab", "<s>"];
        var path = new GgufTestWriter(3)
            .AddString("tokenizer.ggml.model", "gpt2")
            .Add("tokenizer.ggml.tokens", GgufValueType.Array, new GgufArray(GgufValueType.String, tokens))
            .Add("tokenizer.ggml.merges", GgufValueType.Array, new GgufArray(GgufValueType.String, new[] { "a b", "Ġ ab" }))
            .AddString("tokenizer.chat_template", ChatMl)
            .Write(Path.Combine(dir.Path, "bpe.gguf"));
        var outDir = Path.Combine(dir.Path, "hf");
        using (var gguf = GgufFile.Open(path))
        {
            Petals.Tokenization.TokenizerLoader.WriteHuggingFaceFiles(gguf, outDir);
        }

        Assert.Equal(ChatMl, ChatTemplate.Load(outDir)!.Source);
        Assert.Equal(ChatTemplate.Load(path)!.Render(Conversation), ChatTemplate.Load(outDir)!.Render(Conversation));
        Assert.Equal([2], Petals.Tokenization.TokenizerLoader.Load(outDir).Encode("ab", addSpecialTokens: false));
    }

    [Fact]
    public void TheSharedStoriesModelHasNoTemplate()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.Null(ChatTemplate.Load(TestData.Stories260KGguf));
    }

    [Fact]
    public void TheSharedLlama3TokenizerConfigTemplateLoads()
    {
        Assert.SkipUnless(Directory.Exists(TestData.Llama3TokenizerDir), TestData.MissingMessage);
        var template = ChatTemplate.Load(TestData.Llama3TokenizerDir);
        Assert.NotNull(template);
        var text = template.Render([new("system", " Be brief. "), new("user", "Hello")], new ChatTemplateOptions { BosToken = "<|begin_of_text|>" });
        Assert.Equal("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", text);
    }

    [Fact]
    public void RejectsAnEmptyPath() => Assert.Throws<ArgumentException>(() => ChatTemplate.Load(string.Empty));
}
