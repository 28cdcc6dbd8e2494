using System.Text.Json;
using Petals.Testing;

namespace Petals.Cli.Tests;

public sealed class FinetuneCommandTests
{
    internal static string StyleTrain => Path.Combine(TestData.RepositoryRoot, "samples", "finetune", "style-train.jsonl");

    private static string StyleEval => Path.Combine(TestData.RepositoryRoot, "samples", "finetune", "style-eval.jsonl");

    [Theory]
    [InlineData("--classes", "1", "--classes must be 0 (causal LM) or at least 2")]
    [InlineData("--lr", "0", "--lr must be positive")]
    [InlineData("--lora-targets", "q_proj,w_proj", "unknown layer 'w_proj'")]
    [InlineData("--prompt-tokens", "0", "--prompt-tokens must be at least 1")]
    [InlineData("--seq-len", "1", "--seq-len must be at least 2")]
    [InlineData("--steps", "0", "--steps must be at least 1")]
    [InlineData("--model-id", "m", "--model-id needs --initial-peers")]
    public async Task BadOptionsAreRefusedBeforeLoading(string option, string value, string message)
    {
        var (code, _, error) = await CliRunner.RunAsync("finetune", "--model", "m.gguf", "--data", "d.jsonl", "--mode", "ptune", "--out", "o", option, value);
        Assert.NotEqual(0, code);
        Assert.Contains(message, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnUnknownModeIsRefused()
    {
        var (code, _, error) = await CliRunner.RunAsync("finetune", "--model", "m.gguf", "--data", "d.jsonl", "--mode", "prefix", "--out", "o");
        Assert.NotEqual(0, code);
        Assert.Contains("prefix", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PeersAndInitialPeersAreExclusive()
    {
        var (code, _, error) = await CliRunner.RunAsync("finetune", "--model", "m.gguf", "--data", "d.jsonl", "--mode", "lora", "--out", "o", "--peers", "127.0.0.1:1", "--initial-peers", "127.0.0.1:2");
        Assert.NotEqual(0, code);
        Assert.Contains("exclusive", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABadDataLineIsNamedByItsNumber()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var data = Path.Combine(dir.Path, "bad.jsonl");
        await File.WriteAllTextAsync(data, "{\"text\": \"Once upon a time\"}\n{\"text\": 3}\n", TestContext.Current.CancellationToken);
        var (code, _, error) = await CliRunner.RunAsync("finetune", "--model", TestData.Stories260KGguf, "--data", data, "--mode", "ptune", "--out", Path.Combine(dir.Path, "out"));
        Assert.Equal(1, code);
        Assert.Contains("bad.jsonl:2: expected a string property \"text\"", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LabelledDataNeedsClasses()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var data = Path.Combine(TestData.RepositoryRoot, "samples", "finetune", "mood-train.jsonl");
        var (code, _, error) = await CliRunner.RunAsync("finetune", "--model", TestData.Stories260KGguf, "--data", data, "--mode", "ptune", "--out", Path.Combine(dir.Path, "out"));
        Assert.Equal(1, code);
        Assert.Contains("--classes", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AShortRunPrintsAJsonLinePerStepAndWritesTheParametersThatGenerateAndPerplexityUse()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var outDir = Path.Combine(dir.Path, "tuned");
        var (code, output, error) = await CliRunner.RunAsync(
            "finetune", "--model", TestData.Stories260KGguf, "--data", StyleTrain, "--eval-data", StyleEval, "--mode", "deep-ptune", "--prompt-tokens", "4",
            "--steps", "6", "--batch-size", "4", "--seq-len", "48", "--lr", "0.05", "--out", outDir, "--output", "json");

        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(7, lines.Length);
        for (var i = 0; i < 6; i++)
        {
            using var step = JsonDocument.Parse(lines[i]);
            Assert.Equal(i + 1, step.RootElement.GetProperty("step").GetInt32());
            Assert.True(step.RootElement.GetProperty("loss").GetDouble() > 0);
        }

        using var last = JsonDocument.Parse(lines[^1]);
        var initial = last.RootElement.GetProperty("initial_loss").GetDouble();
        var final = last.RootElement.GetProperty("final_loss").GetDouble();
        Assert.Equal(6, last.RootElement.GetProperty("steps").GetInt32());
        Assert.True(final < initial, $"loss {initial} -> {final}");
        Assert.True(last.RootElement.GetProperty("eval_loss_after").GetDouble() < last.RootElement.GetProperty("eval_loss_frozen").GetDouble());
        using var description = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(outDir, "finetune.json"), TestContext.Current.CancellationToken));
        Assert.Equal("deep_ptune", description.RootElement.GetProperty("mode").GetString());
        Assert.Equal(6, description.RootElement.GetProperty("step").GetInt32());
        Assert.True(File.Exists(Path.Combine(outDir, "adaptation.safetensors")));
        Assert.True(File.Exists(Path.Combine(outDir, "optimizer.safetensors")));

        var story = Path.Combine(dir.Path, "story.txt");
        await File.WriteAllTextAsync(story, "Pim the little dragon went to the park. There Pim met a cat.", TestContext.Current.CancellationToken);
        var plain = await CliRunner.RunAsync("perplexity", "--model", TestData.Stories260KGguf, "--text-file", story, "--output", "json");
        var tuned = await CliRunner.RunAsync("perplexity", "--model", TestData.Stories260KGguf, "--text-file", story, "--output", "json", "--tuned", outDir);
        Assert.True(tuned.ExitCode == 0, tuned.Error);
        double Nll(string json) => JsonDocument.Parse(json).RootElement.GetProperty("nll").GetDouble();
        Assert.True(Nll(tuned.Output) < Nll(plain.Output), $"tuned {Nll(tuned.Output)} vs frozen {Nll(plain.Output)}");

        var generated = await CliRunner.RunAsync("generate", "--model", TestData.Stories260KGguf, "--prompt", "Pim", "--max-new-tokens", "8", "--output", "json", "--tuned", outDir);
        Assert.True(generated.ExitCode == 0, generated.Error);
        Assert.Contains("tuned parameters from", generated.Error, StringComparison.Ordinal);
        Assert.Equal(8, JsonDocument.Parse(generated.Output).RootElement.GetProperty("generated_ids").GetArrayLength());
    }

    [Fact]
    public async Task ResumingContinuesExactlyWhereTheRunStopped()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        string[] Args(string outDir, int steps, int rank = 2) =>
            ["finetune", "--model", TestData.Stories260KGguf, "--data", StyleTrain, "--mode", "lora", "--lora-rank", rank.ToString(System.Globalization.CultureInfo.InvariantCulture), "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
             "--batch-size", "2", "--seq-len", "32", "--out", outDir, "--output", "json"];
        var straight = Path.Combine(dir.Path, "straight");
        var split = Path.Combine(dir.Path, "split");

        var a = await CliRunner.RunAsync(Args(straight, 4));
        var b = await CliRunner.RunAsync(Args(split, 2));
        var c = await CliRunner.RunAsync([.. Args(split, 4), "--resume"]);

        Assert.True(a.ExitCode == 0 && b.ExitCode == 0 && c.ExitCode == 0, a.Error + b.Error + c.Error);
        var straightLines = a.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var resumedLines = c.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(straightLines[2..4], resumedLines[..2]);
        Assert.Contains("resumed from step 2", c.Error, StringComparison.Ordinal);
        Assert.Equal(
            await File.ReadAllBytesAsync(Path.Combine(straight, "adaptation.safetensors"), TestContext.Current.CancellationToken),
            await File.ReadAllBytesAsync(Path.Combine(split, "adaptation.safetensors"), TestContext.Current.CancellationToken));

        var again = await CliRunner.RunAsync([.. Args(split, 4), "--resume"]);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("already at step 4", again.Error, StringComparison.Ordinal);
        var other = await CliRunner.RunAsync([.. Args(split, 6, rank: 3), "--resume"]);
        Assert.Equal(1, other.ExitCode);
        Assert.Contains("other options", other.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ATrainedLoraIsAlsoWrittenAsAPeftAdapterThatGeneratesAsTheTunedParameters()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var outDir = Path.Combine(dir.Path, "lora");
        var train = await CliRunner.RunAsync("finetune", "--model", TestData.Stories260KGguf, "--data", StyleTrain, "--mode", "lora", "--lora-rank", "4", "--lora-targets", "all",
            "--steps", "6", "--batch-size", "4", "--seq-len", "48", "--lr", "0.05", "--out", outDir, "--output", "json");
        Assert.True(train.ExitCode == 0, train.Error);
        var peft = Path.Combine(outDir, "peft");
        Assert.True(File.Exists(Path.Combine(peft, "adapter_config.json")) && File.Exists(Path.Combine(peft, "adapter_model.safetensors")), train.Error);

        string[] generate = ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Pim", "--max-new-tokens", "16", "--output", "json"];
        var tuned = await CliRunner.RunAsync([.. generate, "--tuned", outDir]);
        var served = await CliRunner.RunAsync([.. generate, "--adapters", $"mine={peft}", "--adapter", "mine"]);
        var frozen = await CliRunner.RunAsync(generate);
        Assert.True(tuned.ExitCode == 0 && served.ExitCode == 0, tuned.Error + served.Error);
        string Ids(string json) => JsonDocument.Parse(json).RootElement.GetProperty("generated_ids").ToString();
        Assert.Equal(Ids(tuned.Output), Ids(served.Output));
        Assert.NotEqual(Ids(frozen.Output), Ids(tuned.Output));
    }

    [Fact]
    public async Task WithoutJsonAProgressBarWithLossAndTokensPerSecondGoesToStderr()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var (code, output, error) = await CliRunner.RunAsync(
            "finetune", "--model", TestData.Stories260KGguf, "--data", StyleTrain, "--mode", "ptune", "--prompt-tokens", "2",
            "--steps", "3", "--batch-size", "2", "--seq-len", "24", "--out", Path.Combine(dir.Path, "o"));

        Assert.True(code == 0, error);
        Assert.Equal(string.Empty, output);
        Assert.Matches(@"\rstep 3/3 \[#{30}\] loss \d+\.\d{4} \d+ tokens/s", error);
        Assert.Contains("trained 3 steps", error, StringComparison.Ordinal);
    }
}
