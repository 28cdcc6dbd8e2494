using System.Diagnostics;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Petals.Extensions.AI.Tests.Infrastructure;

namespace Petals.Extensions.AI.Tests.Middleware;

/// <summary>Microsoft.Extensions.AI middleware chained on <c>AddPetalsEmbeddingGenerator</c> over a real in-memory swarm.</summary>
public sealed class EmbeddingMiddlewareTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_distributed_cache_hit_does_not_reach_the_swarm()
    {
        SharedModel.SkipIfAbsent();
        await using var swarm = await MemorySwarm.StartAsync(Ct);
        var services = new ServiceCollection();
        services.AddDistributedMemoryCache();
        swarm.AddClient(services);
        services.AddPetalsEmbeddingGenerator().UseDistributedCache();
        await using var provider = services.BuildServiceProvider();
        var generator = provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();
        string[] texts = ["Once upon a time", "The cat sat."];

        var first = await generator.GenerateAsync(texts, cancellationToken: Ct);
        var sessions = swarm.SessionsOpened;
        var steps = swarm.InferenceSteps;
        Assert.Equal(4, sessions);
        var second = await generator.GenerateAsync(texts, cancellationToken: Ct);

        Assert.Equal(sessions, swarm.SessionsOpened);
        Assert.Equal(steps, swarm.InferenceSteps);
        for (var i = 0; i < texts.Length; i++)
        {
            Assert.Equal(first[i].Vector.ToArray(), second[i].Vector.ToArray());
        }

        // A text not seen before does reach the swarm.
        await generator.GenerateAsync(["Something new."], cancellationToken: Ct);
        Assert.Equal(sessions + 2, swarm.SessionsOpened);
    }

    [Fact]
    public async Task Logging_middleware_records_the_call_and_its_result()
    {
        SharedModel.SkipIfAbsent();
        var capture = new CapturingLoggerProvider(LogLevel.Trace);
        var services = new ServiceCollection();
        services.AddLogging(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(capture));
        services.AddPetalsEmbeddingGenerator((_, _) => Task.FromResult(SharedModel.LoadLocal())).UseLogging();
        await using var provider = services.BuildServiceProvider();
        var generator = provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();

        await generator.GenerateAsync(["Once upon a time"], cancellationToken: Ct);

        var records = capture.Records.Where(r => r.Category.Contains("LoggingEmbeddingGenerator", StringComparison.Ordinal)).ToList();
        Assert.Contains(records, r => r.Message.StartsWith("GenerateAsync invoked", StringComparison.Ordinal)
            && r.Message.Contains("\"Once upon a time\"", StringComparison.Ordinal)
            && r.Message.Contains("\"providerName\": \"petals\"", StringComparison.Ordinal));
        Assert.Contains(records, r => r.Level == LogLevel.Debug && r.Message == "GenerateAsync generated 1 embedding(s).");
    }

    [Fact]
    public async Task OpenTelemetry_middleware_emits_an_activity_and_duration_and_token_metrics()
    {
        SharedModel.SkipIfAbsent();
        var source = "petals-tests-" + Guid.NewGuid().ToString("N");
        var activities = new List<Activity>();
        var metrics = new List<Metric>();
        using var tracing = Sdk.CreateTracerProviderBuilder().AddSource(source).AddInMemoryExporter(activities).Build();
        using var metering = Sdk.CreateMeterProviderBuilder().AddMeter(source).AddInMemoryExporter(metrics).Build();
        var services = new ServiceCollection();
        services.AddPetalsEmbeddingGenerator((_, _) => Task.FromResult(SharedModel.LoadLocal()), o => o.ModelId = "stories260K")
            .UseOpenTelemetry(sourceName: source);
        await using var provider = services.BuildServiceProvider();
        var generator = provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();

        var embeddings = await generator.GenerateAsync(["Once upon a time", "The end."], cancellationToken: Ct);
        metering.ForceFlush();

        var activity = Assert.Single(activities);
        Assert.Equal("embeddings stories260K", activity.DisplayName);
        Assert.Equal("petals", activity.GetTagItem("gen_ai.provider.name"));
        Assert.Equal("stories260K", activity.GetTagItem("gen_ai.request.model"));
        Assert.Equal(embeddings.Usage!.InputTokenCount, Convert.ToInt64(activity.GetTagItem("gen_ai.usage.input_tokens"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Contains(metrics, m => m.Name == "gen_ai.client.operation.duration");
        Assert.Contains(metrics, m => m.Name == "gen_ai.client.token.usage");
    }
}
