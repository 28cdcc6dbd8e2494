using System.Text.Json;
using Petals.Models;
using Petals.Testing;

namespace Petals.Cli.Tests;

/// <summary>
/// <c>petals finetune</c>, <c>perplexity --tuned</c> and <c>generate --tuned</c> through a 3-server swarm over TCP on
/// 127.0.0.1 (found through the DHT) give what the same commands give with the blocks in this process.
/// </summary>
public sealed class FinetuneSwarmCommandTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("deep-ptune")]
    [InlineData("lora")]
    public async Task TrainingScoringAndGeneratingThroughTheSwarmEqualTheLocalRun(string mode)
    {
        GenerateCommandTests.SkipWithoutShared();
        await using var swarm = await StatusAndDiscoveryGenerateTests.TcpSwarm.StartAsync([new BlockRange(0, 2), new BlockRange(2, 4), new BlockRange(4, 5)]);
        using var dir = TestData.CreateTempDirectory();
        string[] remote = ["--initial-peers", swarm.Bootstrap.ToString(), "--insecure"];
        string[] train = ["finetune", "--model", TestData.Stories260KGguf, "--data", FinetuneCommandTests.StyleTrain, "--mode", mode, "--prompt-tokens", "4", "--lora-rank", "4",
            "--steps", "4", "--batch-size", "4", "--seq-len", "40", "--lr", "0.05", "--output", "json"];

        var local = await CliRunner.RunAsync([.. train, "--out", Path.Combine(dir.Path, "local")]);
        Assert.True(local.ExitCode == 0, local.Error);
        var swarmRun = await CliRunner.RunAsync([.. train, "--out", Path.Combine(dir.Path, "swarm"), .. remote]).WaitAsync(Bound, Ct);
        Assert.True(swarmRun.ExitCode == 0, swarmRun.Error);
        Assert.Contains("loaded 5 blocks (remote)", swarmRun.Error, StringComparison.Ordinal);

        // The loss curves agree step by step (fp32 hidden states and gradients on the wire; sums in another order).
        var localLosses = Losses(local.Output);
        var swarmLosses = Losses(swarmRun.Output);
        Assert.Equal(4, swarmLosses.Length);
        for (var i = 0; i < 4; i++)
        {
            Assert.True(Math.Abs(localLosses[i] - swarmLosses[i]) < 1e-3, $"step {i + 1}: local {localLosses[i]}, swarm {swarmLosses[i]}");
        }

        Assert.True(swarm.Servers.All(s => s.GetStatistics().BackwardCalls > 0), "every server ran backward passes");

        var story = Path.Combine(dir.Path, "story.txt");
        await File.WriteAllTextAsync(story, "Pim the little dragon went to the park. There Pim met a cat.", Ct);
        var localNll = await CliRunner.RunAsync("perplexity", "--model", TestData.Stories260KGguf, "--text-file", story, "--output", "json", "--tuned", Path.Combine(dir.Path, "swarm"));
        var swarmNll = await CliRunner.RunAsync(["perplexity", "--model", TestData.Stories260KGguf, "--text-file", story, "--output", "json", "--tuned", Path.Combine(dir.Path, "swarm"), .. remote]).WaitAsync(Bound, Ct);
        Assert.True(swarmNll.ExitCode == 0, swarmNll.Error);
        Assert.Equal(Nll(localNll.Output), Nll(swarmNll.Output), 4);

        string[] generate = ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Pim", "--max-new-tokens", "12", "--output", "json", "--tuned", Path.Combine(dir.Path, "swarm")];
        var localText = await CliRunner.RunAsync(generate);
        var swarmText = await CliRunner.RunAsync([.. generate, .. remote]).WaitAsync(Bound, Ct);
        Assert.True(swarmText.ExitCode == 0, swarmText.Error);
        Assert.Equal(Ids(localText.Output), Ids(swarmText.Output));
    }

    [Fact]
    public async Task QuantizingLocallyAndScoringOnServersAreExclusive()
    {
        var (code, _, error) = await CliRunner.RunAsync("perplexity", "--model", "m.gguf", "--text-file", "t.txt", "--quant", "int8", "--peers", "127.0.0.1:1");
        Assert.NotEqual(0, code);
        Assert.Contains("--quant quantizes the blocks run in this process", error, StringComparison.Ordinal);
    }

    private static double[] Losses(string output) =>
        [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries).SkipLast(1).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble())];

    private static double Nll(string json) => JsonDocument.Parse(json).RootElement.GetProperty("nll").GetDouble();

    private static string Ids(string json) => JsonDocument.Parse(json).RootElement.GetProperty("generated_ids").ToString();
}
