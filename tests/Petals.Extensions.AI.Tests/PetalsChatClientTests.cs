using Microsoft.Extensions.AI;
using Petals.Generation;
using Petals.Testing;
using Petals.Testing.Time;

namespace Petals.Extensions.AI.Tests;

/// <summary>The client's own rules, on a local model: instructions, refused messages, options checked up front, lifetime.</summary>
public sealed class PetalsChatClientTests(LocalHost host) : IClassFixture<LocalHost>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Instructions_render_as_a_leading_system_message()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 });
        var viaOptions = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi.")], new ChatOptions { Instructions = "Speak of dragons.", MaxOutputTokens = 10 }, Ct);
        var viaMessage = await client.GetResponseAsync([new ChatMessage(ChatRole.System, "Speak of dragons."), new ChatMessage(ChatRole.User, "Hi.")], new ChatOptions { MaxOutputTokens = 10 }, Ct);
        Assert.Equal(viaMessage.Text, viaOptions.Text);
        Assert.Equal(viaMessage.Usage!.InputTokenCount, viaOptions.Usage!.InputTokenCount);
    }

    [Fact]
    public async Task Tool_messages_and_function_calls_in_the_history_are_refused()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(host.Model);
        var tool = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(
            [new ChatMessage(ChatRole.User, "Hi."), new ChatMessage(ChatRole.Tool, [new FunctionResultContent("1", 42)])], null, Ct));
        Assert.Contains("Message 1 has the role 'tool'", tool.Message, StringComparison.Ordinal);
        var call = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(
            [new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("1", "f")])], null, Ct));
        Assert.Contains("FunctionCallContent", call.Message, StringComparison.Ordinal);
        Assert.Equal(0, host.Counter.OpenSessions);
    }

    [Fact]
    public async Task A_model_whose_own_template_does_not_parse_needs_a_template_in_the_options()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var broken = new CausalLanguageModel(host.Model.Head, host.Model.Blocks, host.Model.Tokenizer)
        {
            ChatTemplateError = "The chat template of m.gguf does not parse: line 1, column 40: expected '}}'.",
        };
        using var refusing = new PetalsChatClient(broken);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => refusing.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi.")], null, Ct));
        Assert.Contains("The model's own chat template cannot be used (The chat template of m.gguf does not parse", error.Message, StringComparison.Ordinal);
        Assert.Contains("PetalsChatClientOptions.ChatTemplate", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, host.Counter.OpenSessions);

        using var given = new PetalsChatClient(broken, new PetalsChatClientOptions { ChatTemplate = "{% for m in messages %}{{ m.content }}\n{% endfor %}", MaxCachedConversations = 0 });
        var response = await given.GetResponseAsync([new ChatMessage(ChatRole.User, "Once upon a time")], new ChatOptions { MaxOutputTokens = 3 }, Ct);
        Assert.Equal(3, response.Usage!.OutputTokenCount);
    }

    [Fact]
    public void Bad_client_options_are_refused_by_name()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.Contains("DefaultMaxOutputTokens", Assert.Throws<ArgumentOutOfRangeException>(() => new PetalsChatClient(host.Model, new PetalsChatClientOptions { DefaultMaxOutputTokens = 0 })).Message, StringComparison.Ordinal);
        Assert.Contains("MaxCachedConversations", Assert.Throws<ArgumentOutOfRangeException>(() => new PetalsChatClient(host.Model, new PetalsChatClientOptions { MaxCachedConversations = -1 })).Message, StringComparison.Ordinal);
        Assert.Contains("ConversationMaxLength", Assert.Throws<ArgumentOutOfRangeException>(() => new PetalsChatClient(host.Model, new PetalsChatClientOptions { ConversationMaxLength = 1 })).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentNullException>(() => new PetalsChatClient((CausalLanguageModel)null!));
    }

    [Fact]
    public async Task The_default_token_limit_and_clock_come_from_the_options()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var clock = new ManualTimeProvider(new DateTimeOffset(2026, 12, 8, 1, 2, 3, TimeSpan.Zero));
        using var client = new PetalsChatClient(host.Model, new PetalsChatClientOptions { DefaultMaxOutputTokens = 3, TimeProvider = clock, ModelId = "my-stories" });
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi.")], new ChatOptions { ModelId = "my-stories" }, Ct);
        Assert.Equal(3, response.Usage!.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(clock.GetUtcNow(), response.CreatedAt);
        Assert.Equal("my-stories", response.ModelId);
        Assert.Equal("my-stories", client.GetService<ChatClientMetadata>()!.DefaultModelId);
    }

    [Fact]
    public async Task A_lazily_connected_model_is_connected_on_first_use_and_disposed_with_the_client()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var connects = 0;
        var owned = new CausalLanguageModel(host.Model.Head, new CountingTransformerBlocks(host.Model.Blocks), host.Model.Tokenizer);
        var client = new PetalsChatClient(new PetalsModelSource(_ => { connects++; return Task.FromResult(owned); }), null);
        Assert.Null(client.GetService<CausalLanguageModel>());
        Assert.Null(client.GetService<ChatClientMetadata>()!.DefaultModelId);
        await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi.")], new ChatOptions { MaxOutputTokens = 2 }, Ct);
        await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello.")], new ChatOptions { MaxOutputTokens = 2 }, Ct);
        Assert.Equal(1, connects);
        Assert.Same(owned, client.GetService<CausalLanguageModel>());
        var blocks = (CountingTransformerBlocks)owned.Blocks;
        Assert.Equal(2, blocks.OpenSessions);

        client.Dispose();
        client.Dispose();
        Assert.Equal(0, blocks.OpenSessions);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi.")], null, Ct));
    }

    [Fact]
    public async Task A_template_writing_bos_itself_is_encoded_without_the_tokenizers_special_tokens()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        const string source = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
        Petals.Chat.ChatTemplate template;
        try
        {
            template = Petals.Chat.ChatTemplate.Parse(source);
        }
        catch (NotSupportedException e)
        {
            Assert.Skip("The Jinja interpreter behind ChatTemplate.Parse is not in this build (another part of issue 16): " + e.Message);
            return;
        }

        var tokenizer = host.Model.Tokenizer!;
        var bos = tokenizer.IdToToken(tokenizer.BosTokenId!.Value)!;
        var rendered = template.Render([new Petals.Chat.ChatTemplateMessage("user", "Hi.")], new Petals.Chat.ChatTemplateOptions { BosToken = bos });
        Assert.StartsWith(bos, rendered, StringComparison.Ordinal);
        var ids = tokenizer.Encode(rendered, addSpecialTokens: false);
        Assert.Equal(tokenizer.BosTokenId, ids[0]);
        Assert.NotEqual(tokenizer.BosTokenId, ids[1]);

        using var client = new PetalsChatClient(host.Model, new PetalsChatClientOptions { ChatTemplate = source, MaxCachedConversations = 0 });
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi.")], new ChatOptions { MaxOutputTokens = 6 }, Ct);
        Assert.Equal(ids.Length, response.Usage!.InputTokenCount);
        var direct = new List<int>();
        await foreach (var token in host.Model.GenerateAsync(ids, new GenerationOptions { MaxNewTokens = 6 }, Ct))
        {
            direct.Add(token);
        }

        Assert.Equal(tokenizer.Decode([.. direct], skipSpecialTokens: true), response.Text);
    }
}
