using Petals.Backends.Cpu;
using Petals.Chat;
using Petals.Formats.Gguf;
using Petals.Generation;
using Petals.Testing;
using Petals.Tests.Formats;

namespace Petals.Tests.Chat;

/// <summary>A loaded model carries its chat template: the real stories260K has none; a copy of it with one does.</summary>
public sealed class ModelChatTemplateTests
{
    private const string Template = "{% for m in messages %}{{ m.role | upper }}: {{ m.content | trim }}\n{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}";

    [Fact]
    public void LoadLocalSetsTheTemplateOfTheGguf()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var dir = TestData.CreateTempDirectory();
        string path;
        using (var stories = GgufFile.Open(TestData.Stories260KGguf))
        {
            Assert.Null(stories.GetValue(ChatTemplate.GgufChatTemplateKey));
            path = GgufTestWriter.CopyOf(stories, (t, values) => (GgufTensorType.F32, TestEncodings.F32(values)))
                .AddString(ChatTemplate.GgufChatTemplateKey, Template)
                .Write(Path.Combine(dir.Path, "stories-chat.gguf"));
        }

        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 });
        using (var plain = CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, factory))
        {
            Assert.Null(plain.ChatTemplate);
        }

        using var model = CausalLanguageModel.LoadLocal(path, factory);
        var template = Assert.IsType<ChatTemplate>(model.ChatTemplate);
        Assert.Equal(Template, template.Source);
        var prompt = template.Render([new("user", " Once upon a time "), new("assistant", "there was a cat.")]);
        Assert.Equal("USER: Once upon a time\nASSISTANT: there was a cat.\nASSISTANT:", prompt);
        Assert.NotEmpty(Assert.IsAssignableFrom<Petals.Tokenization.ITokenizer>(model.Tokenizer).Encode(prompt));
    }

    [Fact]
    public async Task ABrokenTemplateDoesNotStopTheModelLoadingAndIsReported()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var dir = TestData.CreateTempDirectory();
        string path;
        using (var stories = GgufFile.Open(TestData.Stories260KGguf))
        {
            path = GgufTestWriter.CopyOf(stories, (t, values) => (GgufTensorType.F32, TestEncodings.F32(values)))
                .AddString(ChatTemplate.GgufChatTemplateKey, "{% for m in messages %}{{ m.content }")
                .Write(Path.Combine(dir.Path, "stories-broken-chat.gguf"));
        }

        Assert.Throws<ChatTemplateException>(() => ChatTemplate.Load(path));
        using var model = CausalLanguageModel.LoadLocal(path, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 }));
        Assert.Null(model.ChatTemplate);
        var error = Assert.IsType<string>(model.ChatTemplateError);
        Assert.Contains("does not parse", error, StringComparison.Ordinal);
        Assert.Contains("stories-broken-chat.gguf", error, StringComparison.Ordinal);

        // Generation does not need the template.
        var text = string.Concat(await model.GenerateTextAsync("Once upon a time", new GenerationOptions { MaxNewTokens = 4 }, TestContext.Current.CancellationToken)
            .ToArrayAsync(TestContext.Current.CancellationToken));
        Assert.NotEmpty(text);
    }
}
