using System.Text.Json;
using Petals.Testing;

namespace Petals.Cli.Tests;

public sealed class GenerateCommandTests
{
    [Fact]
    public async Task GreedyJsonOutputHoldsPromptIdsGeneratedIdsAndACoherentStory()
    {
        SkipWithoutShared();
        var (code, output, error) = await CliRunner.RunAsync(
            "generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "30", "--output", "json");

        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal([1, 403, 407, 261, 378], root.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(30, root.GetProperty("generated_ids").GetArrayLength());
        Assert.StartsWith(", there was a little girl named Lily. She loved to play outside", root.GetProperty("text").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TextOutputStreamsThePromptAndItsContinuation()
    {
        SkipWithoutShared();
        var (code, output, error) = await CliRunner.RunAsync(
            "generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "12");

        Assert.True(code == 0, error);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", output, StringComparison.Ordinal);
        Assert.Contains("generated 12 tokens", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SeededSamplingIsReproducibleAndDiffersFromGreedy()
    {
        SkipWithoutShared();
        string[] Args(string seed) => ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "40",
            "--temperature", "1.0", "--top-p", "0.95", "--top-k", "40", "--seed", seed, "--output", "json"];
        var a = await CliRunner.RunAsync(Args("7"));
        var b = await CliRunner.RunAsync(Args("7"));
        var c = await CliRunner.RunAsync(Args("8"));
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(a.Output, b.Output);
        Assert.NotEqual(a.Output, c.Output);
    }

    [Fact]
    public async Task AMissingModelIsAClearErrorNotACrash()
    {
        var (code, _, error) = await CliRunner.RunAsync("generate", "--model", "/nonexistent/model.gguf", "--prompt", "x");
        Assert.Equal(1, code);
        Assert.Contains("/nonexistent/model.gguf", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ATruncatedModelFileIsAClearErrorNamingTheFile()
    {
        SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var path = Path.Combine(dir.Path, "cut.gguf");
        var bytes = await File.ReadAllBytesAsync(TestData.Stories260KGguf, TestContext.Current.CancellationToken);
        await File.WriteAllBytesAsync(path, bytes.AsMemory(0, bytes.Length / 2), TestContext.Current.CancellationToken);

        var (code, _, error) = await CliRunner.RunAsync("generate", "--model", path, "--prompt", "x");

        Assert.Equal(1, code);
        Assert.Contains(path, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--output", "xml")]
    [InlineData("--temperature", "-1")]
    [InlineData("--top-p", "0")]
    [InlineData("--max-new-tokens", "0")]
    public async Task InvalidOptionValuesAreRejected(string option, string value)
    {
        var (code, _, error) = await CliRunner.RunAsync("generate", "--model", "m.gguf", "--prompt", "x", option, value);
        Assert.NotEqual(0, code);
        Assert.False(string.IsNullOrWhiteSpace(error));
    }

    [Fact]
    public async Task TheRealProcessGeneratesAndExitsCleanly()
    {
        SkipWithoutShared();
        var (code, output, error) = await CliRunner.RunProcessAsync(TimeSpan.FromMinutes(2),
            "generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "20");
        Assert.True(code == 0, error);
        Assert.StartsWith("Once upon a time, there was a little girl", output, StringComparison.Ordinal);
    }

    internal static void SkipWithoutShared()
    {
        if (!TestData.SharedAvailable)
        {
            Assert.Skip(TestData.MissingMessage);
        }
    }
}
