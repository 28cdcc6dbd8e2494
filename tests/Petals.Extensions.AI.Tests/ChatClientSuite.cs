using System.Text.Json;
using Microsoft.Extensions.AI;
using Petals.Chat;
using Petals.Cli;
using Petals.Testing;

namespace Petals.Extensions.AI.Tests;

/// <summary>
/// The chat client's behaviour on the shared stories260K model, run against every kind of model (local blocks, fixed
/// peers, a swarm): the reference is `petals generate` on the rendered prompt, run in-process on the same blocks.
/// </summary>
public abstract class ChatClientSuite<THost>(THost host) : IClassFixture<THost>
    where THost : ChatModelHost
{
    protected THost Host => host;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static List<ChatMessage> Story(string request = "Tell me a story about a cat.") =>
    [
        new(ChatRole.System, "You are a storyteller."),
        new(ChatRole.User, request),
    ];

    [Fact]
    public async Task Greedy_text_equals_petals_generate_on_the_rendered_prompt_with_exact_usage_and_finish_reason()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 });
        foreach (var max in new[] { 5, 40 })
        {
            var messages = Story();
            var response = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = max }, Ct);
            var reference = await GenerateAsync(Render(messages), max);

            Assert.Equal(reference.Text, response.Text);
            Assert.Equal(ChatRole.Assistant, Assert.Single(response.Messages).Role);
            Assert.Equal(reference.PromptIds, response.Usage!.InputTokenCount);
            Assert.Equal(reference.GeneratedIds.Length, response.Usage.OutputTokenCount);
            Assert.Equal(reference.PromptIds + reference.GeneratedIds.Length, response.Usage.TotalTokenCount);
            var eos = Host.Model.Config.EosTokenIds.Contains(reference.GeneratedIds[^1]);
            Assert.Equal(eos || reference.GeneratedIds.Length < max ? ChatFinishReason.Stop : ChatFinishReason.Length, response.FinishReason);
            Assert.Equal(Host.Model.ModelId, response.ModelId);
            Assert.StartsWith("petals-", response.ResponseId, StringComparison.Ordinal);
            Assert.NotNull(response.CreatedAt);
        }
    }

    [Fact]
    public async Task Streaming_updates_concatenate_to_the_response_and_the_last_carries_finish_reason_and_usage()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 });
        var options = new ChatOptions { MaxOutputTokens = 30 };
        var response = await client.GetResponseAsync(Story(), options, Ct);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Story(), options, Ct))
        {
            updates.Add(update);
        }

        Assert.True(updates.Count > 2, $"{updates.Count} updates");
        Assert.Equal(response.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates, u =>
        {
            Assert.Equal(ChatRole.Assistant, u.Role);
            Assert.Equal(Host.Model.ModelId, u.ModelId);
            Assert.Equal(updates[0].ResponseId, u.ResponseId);
        });
        Assert.All(updates[..^1], u => Assert.Null(u.FinishReason));
        Assert.Equal(response.FinishReason, updates[^1].FinishReason);
        var usage = Assert.Single(updates[^1].Contents.OfType<UsageContent>()).Details;
        Assert.Equal(response.Usage!.InputTokenCount, usage.InputTokenCount);
        Assert.Equal(response.Usage.OutputTokenCount, usage.OutputTokenCount);
        Assert.Equal(response.Usage.TotalTokenCount, usage.TotalTokenCount);

        // Microsoft.Extensions.AI's own aggregation of the updates gives the same response.
        var merged = updates.ToChatResponse();
        Assert.Equal(response.Text, merged.Text);
        Assert.Equal(response.FinishReason, merged.FinishReason);
        Assert.Equal(response.Usage.OutputTokenCount, merged.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task A_stop_sequence_ends_the_text_before_it_and_streaming_never_emits_any_of_it()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 });
        var full = (await client.GetResponseAsync(Story(), new ChatOptions { MaxOutputTokens = 40 }, Ct)).Text;
        Assert.True(full.Length > 20, full);

        // A stop sequence spanning tokens in the middle of the greedy text, and one that never occurs.
        var at = full.IndexOf(' ', full.Length / 2);
        var stop = full.Substring(at, 4);
        var expected = full[..full.IndexOf(stop, StringComparison.Ordinal)];
        var options = new ChatOptions { MaxOutputTokens = 40, StopSequences = ["never-in-a-story", stop] };
        var response = await client.GetResponseAsync(Story(), options, Ct);
        Assert.Equal(expected, response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.True(response.Usage!.OutputTokenCount < 40, $"{response.Usage.OutputTokenCount} tokens generated");

        var streamed = new List<string>();
        ChatResponseUpdate? last = null;
        await foreach (var update in client.GetStreamingResponseAsync(Story(), options, Ct))
        {
            streamed.Add(update.Text);
            last = update;
        }

        Assert.Equal(expected, string.Concat(streamed));
        Assert.Equal(ChatFinishReason.Stop, last!.FinishReason);
    }

    [Fact]
    public async Task Seeded_sampling_equals_petals_generate_with_that_seed_and_repeats()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 });
        var texts = new List<string>();
        foreach (var seed in new[] { 3, 4, 5 })
        {
            var options = new ChatOptions { MaxOutputTokens = 20, Temperature = 1, TopK = 40, TopP = 0.5f, Seed = seed };
            var first = await client.GetResponseAsync(Story(), options, Ct);
            var again = await client.GetResponseAsync(Story(), options, Ct);
            Assert.Equal(first.Text, again.Text);
            var reference = await GenerateAsync(Render(Story()), 20, "--temperature", "1", "--top-k", "40", "--top-p", ((double)0.5f).ToString("R", System.Globalization.CultureInfo.InvariantCulture), "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(reference.Text, first.Text);
            texts.Add(first.Text);
        }

        Assert.True(texts.Distinct().Count() > 1, "three seeds gave the same text: " + texts[0]);
    }

    [Fact]
    public async Task A_cancelled_request_closes_its_session_on_the_servers()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model);
        var messages = Story();
        var first = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 8 }, Ct);
        Assert.Equal(1, client.CachedConversationCount);
        Assert.Equal(1, Host.Counter.OpenSessions);

        // The next turn continues on the kept session; cancelled after its first piece of text, it closes that session.
        messages.Add(first.Messages[0]);
        messages.Add(new ChatMessage(ChatRole.User, "And then?"));
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var received = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(messages, new ChatOptions { MaxOutputTokens = 200 }, cts.Token))
            {
                received++;
                await cts.CancelAsync();
            }
        });
        Assert.Equal(1, received);
        Assert.Equal(0, client.CachedConversationCount);
        Assert.Equal(0, Host.Counter.OpenSessions);
        await Host.WaitForNoServerSessionsAsync();
    }

    [Fact]
    public async Task Each_later_turn_prefills_only_its_new_tokens_and_gives_the_text_of_a_fresh_session()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var reusing = new PetalsChatClient(Host.Model);
        using var fresh = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 });
        var messages = new List<ChatMessage> { new(ChatRole.User, "Tell me about a dog.") };
        string[] next = ["What did the dog eat?", "Where did it go?", "Was it happy?", "The end?"];
        var previousProcessed = 0L;
        for (var turn = 0; turn < 5; turn++)
        {
            var options = new ChatOptions { MaxOutputTokens = 12 };
            var positions = Host.Counter.Positions;
            var served = Host.Servers.Select(s => s.GetStatistics().TokensProcessed).ToArray();
            var response = await reusing.GetResponseAsync(messages, options, Ct);
            var ran = Host.Counter.Positions - positions;
            var servedNow = Host.Servers.Select(s => s.GetStatistics().TokensProcessed).ToArray();
            var expected = await fresh.GetResponseAsync(messages, options, Ct);

            Assert.Equal(expected.Text, response.Text);
            var usage = response.Usage!;
            Assert.Equal(expected.Usage!.InputTokenCount, usage.InputTokenCount);
            Assert.Equal(turn == 0 ? 0 : previousProcessed, usage.CachedInputTokenCount);

            // Run: the new prompt tokens, then every generated token but the last.
            Assert.Equal(usage.InputTokenCount!.Value - usage.CachedInputTokenCount!.Value + usage.OutputTokenCount!.Value - 1, ran);
            for (var s = 0; s < Host.Servers.Count; s++)
            {
                Assert.Equal(ran, servedNow[s] - served[s]);
            }

            previousProcessed = usage.InputTokenCount.Value + usage.OutputTokenCount.Value - 1;
            Assert.Equal(1, reusing.CachedConversationCount);
            messages.Add(response.Messages[0]);
            messages.Add(new ChatMessage(ChatRole.User, next[turn % next.Length]));
        }
    }

    [Fact]
    public async Task A_stream_abandoned_early_keeps_its_session_usable_for_the_next_request()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model);
        using var fresh = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 });
        var options = new ChatOptions { MaxOutputTokens = 30 };
        var pieces = 0;
        await foreach (var update in client.GetStreamingResponseAsync(Story(), options, Ct))
        {
            if (++pieces == 2)
            {
                break;
            }
        }

        // The reader stopped after two pieces: the session holds what ran so far and is kept.
        Assert.Equal(1, client.CachedConversationCount);
        Assert.Equal(1, Host.Counter.OpenSessions);
        var again = await client.GetResponseAsync(Story(), options, Ct);
        Assert.True(again.Usage!.CachedInputTokenCount > 0);
        Assert.Equal((await fresh.GetResponseAsync(Story(), options, Ct)).Text, again.Text);
    }

    [Fact]
    public async Task The_least_recently_used_conversation_is_closed_beyond_the_bound()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 2 });
        var options = new ChatOptions { MaxOutputTokens = 6 };
        // Questions with (almost) nothing in common, so that none continues another's session.
        var conversations = new[] { "A cat sat on the mat.", "Why do dogs bark at night?", "Birds fly south." }.Select(t => new List<ChatMessage> { new(ChatRole.User, t) }).ToArray();
        foreach (var conversation in conversations)
        {
            conversation.Add((await client.GetResponseAsync(conversation, options, Ct)).Messages[0]);
            conversation.Add(new ChatMessage(ChatRole.User, "More."));
        }

        Assert.Equal(2, client.CachedConversationCount);
        Assert.Equal(2, Host.Counter.OpenSessions);

        // The bird and the dog are kept; the cat (least recently used) was closed and starts over.
        var bird = await client.GetResponseAsync(conversations[2], options, Ct);
        Assert.True(bird.Usage!.CachedInputTokenCount > 0);
        var cat = await client.GetResponseAsync(conversations[0], options, Ct);
        Assert.Equal(0, cat.Usage!.CachedInputTokenCount);
        Assert.Equal(2, client.CachedConversationCount);
        Assert.Equal(2, Host.Counter.OpenSessions);

        client.Dispose();
        Assert.Equal(0, Host.Counter.OpenSessions);
        await Host.WaitForNoServerSessionsAsync();
    }

    [Fact]
    public async Task An_edited_history_rolls_the_kept_session_back_to_the_common_prefix_with_the_text_of_a_fresh_client()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model);
        using var fresh = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 });
        var options = new ChatOptions { MaxOutputTokens = 8 };
        var messages = Story();
        var first = await client.GetResponseAsync(messages, options, Ct);
        var kept = Host.Model.Tokenizer!.Encode(Render(messages)).Length + (int)first.Usage!.OutputTokenCount!.Value - 1;
        messages.Add(first.Messages[0]);
        messages.Add(new ChatMessage(ChatRole.User, "Go on."));

        // The user rewrites the end of the first question: the session keeps what precedes the edit.
        messages[1] = new ChatMessage(ChatRole.User, "Tell me a story about a frog.");
        var before = Host.Model.Tokenizer.Encode(Render(Story()));
        var after = Host.Model.Tokenizer.Encode(Render(messages));
        var common = before.Zip(after).TakeWhile(p => p.First == p.Second).Count();
        Assert.True(2 * common >= kept, $"{common} of {kept} tokens in common");
        var positions = Host.Counter.Positions;
        var edited = await client.GetResponseAsync(messages, options, Ct);
        Assert.Equal(common, edited.Usage!.CachedInputTokenCount);
        Assert.Equal(edited.Usage.InputTokenCount - common + edited.Usage.OutputTokenCount - 1, Host.Counter.Positions - positions);
        Assert.Equal((await fresh.GetResponseAsync(messages, options, Ct)).Text, edited.Text);
        Assert.Equal(1, client.CachedConversationCount);
        Assert.Equal(1, Host.Counter.OpenSessions);
    }

    [Fact]
    public async Task A_history_edited_near_its_start_runs_on_a_fresh_session_and_both_are_kept()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model);
        using var fresh = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 });
        var options = new ChatOptions { MaxOutputTokens = 8 };
        var messages = Story();
        messages.Add((await client.GetResponseAsync(messages, options, Ct)).Messages[0]);
        messages.Add(new ChatMessage(ChatRole.User, "Go on."));

        // A new system prompt: too little in common to roll the kept conversation back for it.
        messages[0] = new ChatMessage(ChatRole.System, "Be funny.");
        var positions = Host.Counter.Positions;
        var edited = await client.GetResponseAsync(messages, options, Ct);
        Assert.Equal(0, edited.Usage!.CachedInputTokenCount);
        Assert.Equal(edited.Usage.InputTokenCount + edited.Usage.OutputTokenCount - 1, Host.Counter.Positions - positions);
        Assert.Equal((await fresh.GetResponseAsync(messages, options, Ct)).Text, edited.Text);
        Assert.Equal(2, client.CachedConversationCount);
    }

    [Fact]
    public async Task A_turn_beyond_ConversationMaxLength_runs_on_a_one_off_session()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var messages = Story();
        int promptTokens;
        using (var measuring = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { MaxCachedConversations = 0 }))
        {
            promptTokens = (int)(await measuring.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 1 }, Ct)).Usage!.InputTokenCount!.Value;
        }

        // Room for the first turn and a few more tokens, not for the second turn.
        var room = promptTokens + 10 + 5;
        using var client = new PetalsChatClient(Host.Model, new PetalsChatClientOptions { ConversationMaxLength = room });
        var first = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 10 }, Ct);
        Assert.Equal(1, client.CachedConversationCount);
        messages.Add(first.Messages[0]);
        messages.Add(new ChatMessage(ChatRole.User, "And what happened to the cat after that long day in the garden?"));

        // The kept conversation cannot hold this turn: it is closed, and the turn runs on a session of its own size.
        var second = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 10 }, Ct);
        Assert.Equal(0, second.Usage!.CachedInputTokenCount);
        Assert.True(second.Usage.InputTokenCount + 10 > room);
        Assert.Equal(0, client.CachedConversationCount);
        Assert.Equal(0, Host.Counter.OpenSessions);
    }

    [Fact]
    public async Task Concurrent_turns_on_the_same_history_never_share_a_session_and_agree()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model);
        var options = new ChatOptions { MaxOutputTokens = 8 };
        var messages = Story();
        messages.Add((await client.GetResponseAsync(messages, options, Ct)).Messages[0]);
        messages.Add(new ChatMessage(ChatRole.User, "Go on."));

        var both = await Task.WhenAll(
            Task.Run(() => client.GetResponseAsync(messages, options, Ct), Ct),
            Task.Run(() => client.GetResponseAsync(messages, options, Ct), Ct));
        Assert.Equal(both[0].Text, both[1].Text);

        // At least one continued the kept session. Run at the same time, the other found it in use and took a fresh one
        // (both kept afterwards); run one after the other, the second continued it too, rolled back to its prompt.
        var reused = both.Count(r => r.Usage!.CachedInputTokenCount > 0);
        Assert.InRange(reused, 1, 2);
        Assert.Equal(3 - reused, client.CachedConversationCount);
    }

    [Fact]
    public async Task Options_it_cannot_honour_are_refused_naming_them()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model);
        var tool = AIFunctionFactory.Create(() => 42, "answer");
        (ChatOptions Options, string Named)[] refused =
        [
            (new ChatOptions { Tools = [tool] }, "ChatOptions.Tools"),
            (new ChatOptions { ToolMode = ChatToolMode.RequireAny }, "ChatOptions.ToolMode"),
            (new ChatOptions { ResponseFormat = ChatResponseFormat.Json }, "ChatOptions.ResponseFormat"),
            (new ChatOptions { ModelId = "some-other-model" }, "some-other-model"),
            (new ChatOptions { AdditionalProperties = new() { ["logit_bias"] = 1 } }, "logit_bias"),
            (new ChatOptions { Reasoning = new ReasoningOptions() }, "ChatOptions.Reasoning"),
            (new ChatOptions { AllowBackgroundResponses = true }, "ChatOptions.AllowBackgroundResponses"),
        ];
        foreach (var (options, named) in refused)
        {
            var error = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(Story(), options, Ct));
            Assert.Contains(named, error.Message, StringComparison.Ordinal);
            await Assert.ThrowsAsync<NotSupportedException>(async () =>
            {
                await foreach (var _ in client.GetStreamingResponseAsync(Story(), options, Ct))
                {
                }
            });
        }

        var image = new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3 }, "image/png")]);
        var content = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([image], null, Ct));
        Assert.Contains("DataContent", content.Message, StringComparison.Ordinal);

        foreach (var (options, named) in new (ChatOptions, string)[]
        {
            (new ChatOptions { MaxOutputTokens = 0 }, "MaxOutputTokens"),
            (new ChatOptions { Temperature = -1 }, "Temperature"),
            (new ChatOptions { TopP = 0 }, "TopP"),
            (new ChatOptions { TopK = 0 }, "TopK"),
            (new ChatOptions { StopSequences = [""] }, "StopSequences[0]"),
            (new ChatOptions { MaxOutputTokens = 100_000 }, "context"),
        })
        {
            var error = await Assert.ThrowsAnyAsync<ArgumentException>(() => client.GetResponseAsync(Story(), options, Ct));
            Assert.Contains(named, error.Message, StringComparison.Ordinal);
        }

        // The model's own id is accepted, and nothing was left open by the refusals.
        var ok = await client.GetResponseAsync(Story(), new ChatOptions { ModelId = Host.Model.ModelId, MaxOutputTokens = 2, ToolMode = ChatToolMode.None }, Ct);
        Assert.Equal(2, ok.Usage!.OutputTokenCount);
    }

    [Fact]
    public void GetService_gives_the_metadata_the_model_and_the_client()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var client = new PetalsChatClient(Host.Model);
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.Equal("petals", metadata!.ProviderName);
        Assert.Equal(Host.Model.ModelId, metadata.DefaultModelId);
        Assert.Same(Host.Model, client.GetService<Petals.Generation.CausalLanguageModel>());
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.Null(client.GetService<ChatClientMetadata>("key"));
        Assert.Null(client.GetService<string>());
    }

    private static string Render(IReadOnlyList<ChatMessage> messages) =>
        ChatTemplate.Plain.Render([.. messages.Select(m => new ChatTemplateMessage(m.Role.Value, m.Text))]);

    private async Task<(string Text, int PromptIds, int[] GeneratedIds)> GenerateAsync(string prompt, int maxNewTokens, params string[] extra)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        string[] args = ["generate", "--model", TestData.Stories260KGguf, "--prompt", prompt, "--max-new-tokens", maxNewTokens.ToString(System.Globalization.CultureInfo.InvariantCulture), "--output", "json", .. extra, .. Host.CliArguments];
        var code = await PetalsCommand.RunAsync(args, output, error, Ct).WaitAsync(ChatModelHost.Bound, Ct);
        Assert.True(code == 0, error.ToString());
        using var json = JsonDocument.Parse(output.ToString());
        var root = json.RootElement;
        return (root.GetProperty("text").GetString()!, root.GetProperty("prompt_ids").GetArrayLength(),
            [.. root.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32())]);
    }
}

/// <summary>The suite on blocks in this process.</summary>
public sealed class LocalChatClientTests(LocalHost host) : ChatClientSuite<LocalHost>(host);

/// <summary>The suite on two block servers over TCP, named by address.</summary>
public sealed class FixedPeerChatClientTests(FixedPeerHost host) : ChatClientSuite<FixedPeerHost>(host);

/// <summary>The suite on a swarm found through the DHT.</summary>
public sealed class SwarmChatClientTests(SwarmHost host) : ChatClientSuite<SwarmHost>(host);
