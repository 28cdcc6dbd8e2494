using System.Collections.Concurrent;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Petals.Client;
using Petals.Testing;

namespace Petals.Extensions.AI.Tests;

/// <summary>Servers that hold shorter sessions than a conversation asks for: turns fall back to sessions of their own size.</summary>
public sealed class ServerLimitTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_conversation_session_the_servers_refuse_falls_back_to_one_off_sessions_logged_once()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var servers = new ServerSet();
        await servers.StartAsync([new(0, 5)], announcers: null, maxSessionLength: 100);
        using var model = await RemoteModel.ConnectAsync(TestData.Stories260KGguf, ServerSet.Transport, servers.Addresses, cancellationToken: Ct);
        Assert.True(model.Config.MaxPositionEmbeddings > 100);
        var logger = new CapturingLogger();
        using var client = new PetalsChatClient(new PetalsModelSource(model), null, logger);
        using var fresh = new PetalsChatClient(model, new PetalsChatClientOptions { MaxCachedConversations = 0 });

        List<ChatMessage> messages = [new(ChatRole.User, "Tell me a story.")];
        for (var turn = 0; turn < 2; turn++)
        {
            var response = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 10 }, Ct);
            Assert.Equal((await fresh.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 10 }, Ct)).Text, response.Text);
            Assert.Equal(0, response.Usage!.CachedInputTokenCount);
            Assert.Equal(0, client.CachedConversationCount);
            messages.Add(response.Messages[0]);
            messages.Add(new ChatMessage(ChatRole.User, "More."));
        }

        var refused = Assert.Single(logger.Entries, e => e.Id == 6103);
        Assert.Equal(LogLevel.Warning, refused.Level);
        Assert.Contains("holds sessions of at most 100 tokens", refused.Error!.Message, StringComparison.Ordinal);
        Assert.Contains(logger.Entries, e => e.Id == 6101);
        var deadline = DateTime.UtcNow + ChatModelHost.Bound;
        while (servers.Servers[0].GetStatistics().ActiveSessions != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the server still holds a session");
            await Task.Delay(10, Ct);
        }
    }

    private sealed class CapturingLogger : ILogger
    {
        public ConcurrentQueue<(int Id, LogLevel Level, string Message, Exception? Error)> Entries { get; } = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Enqueue((eventId.Id, logLevel, formatter(state, exception), exception));
    }
}
