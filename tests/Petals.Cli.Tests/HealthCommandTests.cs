using System.Text.Json;
using Petals.Testing;

namespace Petals.Cli.Tests;

/// <summary><c>petals health</c>: the monitor over a real swarm, its ready line and its flag errors.</summary>
public sealed class HealthCommandTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task HealthPrintsListeningAndServesTheSwarmsState()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var swarm = await StatusAndDiscoveryGenerateTests.TcpSwarm.StartAsync([new(0, 2), new(2, 5)]);
        using var output = new StringWriter();
        using var error = new StringWriter();
        var syncOutput = TextWriter.Synchronized(output);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var run = PetalsCommand.RunAsync(["health", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure", "--port", "0", "--refresh", "0.2"], syncOutput, TextWriter.Synchronized(error), stop.Token);
        try
        {
            var deadline = DateTime.UtcNow + Bound;
            string? url = null;
            while (url is null)
            {
                Assert.False(run.IsCompleted, $"petals health ended early: {output} {error}");
                Assert.True(DateTime.UtcNow < deadline, "no listening line within " + Bound);
                url = Text(syncOutput, output).Split('\n').FirstOrDefault(l => l.StartsWith("listening http://127.0.0.1:", StringComparison.Ordinal))?["listening ".Length..].Trim();
                await Task.Delay(20, Ct);
            }

            using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = Bound };
            while (true)
            {
                using var state = JsonDocument.Parse(await http.GetStringAsync(new Uri("/api/v1/state", UriKind.Relative), Ct));
                var models = state.RootElement.GetProperty("models");
                if (models.GetArrayLength() == 1 && models[0].GetProperty("server_count").GetInt32() == 2)
                {
                    Assert.Equal(swarm.ModelId, models[0].GetProperty("model_id").GetString());
                    Assert.True(models[0].GetProperty("chain_complete").GetBoolean());
                    Assert.Equal(0.2, state.RootElement.GetProperty("refresh_seconds").GetDouble());
                    break;
                }

                Assert.True(DateTime.UtcNow < deadline, "the two servers not in the state within " + Bound + ": " + state.RootElement);
                await Task.Delay(100, Ct);
            }

            var page = await http.GetStringAsync(new Uri("/", UriKind.Relative), Ct);
            Assert.Contains("/health-assets/health.js", page, StringComparison.Ordinal);
        }
        finally
        {
            await stop.CancelAsync();
            Assert.Equal(0, await run.WaitAsync(Bound, Ct));
        }
    }

    /// <summary>What was written so far (SyncTextWriter locks on itself).</summary>
    private static string Text(TextWriter sync, StringWriter inner)
    {
        lock (sync)
        {
            return inner.ToString();
        }
    }

    [Theory]
    [InlineData("--refresh", "0", "error: --refresh must be 0.1 to 3600 seconds; it is 0.")]
    [InlineData("--port", "70000", "error: --port must be 0 to 65535; it is 70000.")]
    [InlineData("--host", "a b", "error: --host: 'a b' is not a host name or IP address.")]
    public async Task BadFlagsGiveOneErrorLineNamingTheFlag(string flag, string value, string expected)
    {
        var (code, output, err) = await CliRunner.RunAsync("health", "--initial-peers", "tcp://127.0.0.1:1", "--insecure", flag, value);
        Assert.Equal(1, code);
        Assert.Equal(string.Empty, output);
        Assert.Contains(expected, err.Split('\n').Select(l => l.TrimEnd('\r')));
    }
}
