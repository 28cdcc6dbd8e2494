using System.Diagnostics;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Petals.Extensions.AI.Tests.Infrastructure;

namespace Petals.Extensions.AI.Tests.Middleware;

/// <summary>Microsoft.Extensions.AI middleware chained on <c>AddPetalsChatClient</c> around the real chat client.</summary>
public sealed class ChatMiddlewareTests
{
    private static readonly ChatOptions Greedy = new() { MaxOutputTokens = 12, Temperature = 0 };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_distributed_cache_hit_does_not_reach_the_swarm()
    {
        SharedModel.SkipIfAbsent();
        await using var swarm = await MemorySwarm.StartAsync(Ct);
        var services = new ServiceCollection();
        services.AddDistributedMemoryCache();
        swarm.AddClient(services);
        services.AddPetalsChatClient().UseDistributedCache();
        await using var provider = services.BuildServiceProvider();
        var chat = provider.GetRequiredService<IChatClient>();

        var first = await chat.GetResponseAsync("Tell me a story.", Greedy, Ct);
        var sessions = swarm.SessionsOpened;
        var steps = swarm.InferenceSteps;
        Assert.True(sessions > 0 && steps > 0, $"the first request should run on the swarm ({sessions} sessions, {steps} steps)");
        var second = await chat.GetResponseAsync("Tell me a story.", Greedy, Ct);

        Assert.Equal(sessions, swarm.SessionsOpened);
        Assert.Equal(steps, swarm.InferenceSteps);
        Assert.Equal(first.Text, second.Text);
        Assert.Equal(first.Usage!.OutputTokenCount, second.Usage!.OutputTokenCount);

        // Another prompt does reach the swarm.
        await chat.GetResponseAsync("Tell me another story.", Greedy, Ct);
        Assert.True(swarm.InferenceSteps > steps);
    }

    [Fact]
    public async Task A_cached_streaming_response_replays_the_same_updates_without_the_swarm()
    {
        SharedModel.SkipIfAbsent();
        await using var swarm = await MemorySwarm.StartAsync(Ct);
        var services = new ServiceCollection();
        services.AddDistributedMemoryCache();
        swarm.AddClient(services);
        services.AddPetalsChatClient().UseDistributedCache();
        await using var provider = services.BuildServiceProvider();
        var chat = provider.GetRequiredService<IChatClient>();

        var first = await chat.GetStreamingResponseAsync("Tell me a story.", Greedy, Ct).ToChatResponseAsync(Ct);
        var steps = swarm.InferenceSteps;
        var second = await chat.GetStreamingResponseAsync("Tell me a story.", Greedy, Ct).ToChatResponseAsync(Ct);

        Assert.Equal(steps, swarm.InferenceSteps);
        Assert.False(string.IsNullOrEmpty(first.Text));
        Assert.Equal(first.Text, second.Text);
    }

    [Fact]
    public async Task Logging_middleware_records_the_call_and_the_response()
    {
        SharedModel.SkipIfAbsent();
        var capture = new CapturingLoggerProvider(LogLevel.Trace);
        var services = new ServiceCollection();
        services.AddLogging(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(capture));
        services.AddPetalsChatClient((_, _) => Task.FromResult(SharedModel.LoadLocal())).UseLogging();
        await using var provider = services.BuildServiceProvider();
        var chat = provider.GetRequiredService<IChatClient>();

        var response = await chat.GetResponseAsync("Once upon a time", Greedy, Ct);

        var records = capture.Records.Where(r => r.Category.Contains("LoggingChatClient", StringComparison.Ordinal)).ToList();
        Assert.Contains(records, r => r.Message.StartsWith("GetResponseAsync invoked", StringComparison.Ordinal)
            && r.Message.Contains("Once upon a time", StringComparison.Ordinal));
        var completed = Assert.Single(records, r => r.Message.StartsWith("GetResponseAsync completed", StringComparison.Ordinal));
        Assert.Contains(System.Text.Json.JsonSerializer.Serialize(response.Text)[1..^1], completed.Message, StringComparison.Ordinal);

        // The client's own logs go through the container's logger factory too (a new conversation session, event 6101).
        Assert.Contains(capture.Records, r => r.Category == typeof(PetalsChatClient).FullName && r.EventId.Id == 6101);
    }

    [Fact]
    public async Task OpenTelemetry_middleware_emits_a_chat_activity_with_the_usage_and_metrics()
    {
        SharedModel.SkipIfAbsent();
        var source = "petals-chat-tests-" + Guid.NewGuid().ToString("N");
        var activities = new List<Activity>();
        var metrics = new List<Metric>();
        using var tracing = Sdk.CreateTracerProviderBuilder().AddSource(source).AddInMemoryExporter(activities).Build();
        using var metering = Sdk.CreateMeterProviderBuilder().AddMeter(source).AddInMemoryExporter(metrics).Build();
        var services = new ServiceCollection();
        services.AddPetalsChatClient((_, _) => Task.FromResult(SharedModel.LoadLocal()), o => o.ModelId = "stories260K")
            .UseOpenTelemetry(sourceName: source);
        await using var provider = services.BuildServiceProvider();
        var chat = provider.GetRequiredService<IChatClient>();

        var response = await chat.GetResponseAsync("Once upon a time", Greedy, Ct);
        metering.ForceFlush();

        var activity = Assert.Single(activities);
        Assert.Equal("chat stories260K", activity.DisplayName);
        Assert.Equal("petals", activity.GetTagItem("gen_ai.provider.name"));
        Assert.Equal("stories260K", activity.GetTagItem("gen_ai.request.model"));
        Assert.Equal(response.Usage!.InputTokenCount, Convert.ToInt64(activity.GetTagItem("gen_ai.usage.input_tokens"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(response.Usage.OutputTokenCount, Convert.ToInt64(activity.GetTagItem("gen_ai.usage.output_tokens"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Contains(metrics, m => m.Name == "gen_ai.client.operation.duration");
        Assert.Contains(metrics, m => m.Name == "gen_ai.client.token.usage");
    }
}
