using System.Text.Json;
using Petals.Testing;

namespace Petals.Cli.Tests;

public sealed class PerplexityAndTokenizeCommandTests
{
    private const string Story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
        + "One day, she saw a big red ball in the park. She ran to the ball and kicked it very high. Lily was happy and laughed with her mom.";

    [Fact]
    public async Task PerplexityOfAStoryIsLowAndJsonShaped()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var file = Path.Combine(dir.Path, "story.txt");
        await File.WriteAllTextAsync(file, Story, TestContext.Current.CancellationToken);

        var (code, output, error) = await CliRunner.RunAsync("perplexity", "--model", TestData.Stories260KGguf, "--text-file", file, "--output", "json");

        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var nll = doc.RootElement.GetProperty("nll").GetDouble();
        Assert.InRange(nll, 0.1, 2.0);
        Assert.Equal(79, doc.RootElement.GetProperty("tokens").GetInt32());
    }

    [Fact]
    public async Task ShuffledWordsScoreMuchWorseThanTheStory()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var words = Story.Split(' ');
        var shuffled = string.Join(' ', words.Select((w, i) => (w, k: (i * 7919) % words.Length)).OrderBy(p => p.k).Select(p => p.w));
        var good = Path.Combine(dir.Path, "good.txt");
        var bad = Path.Combine(dir.Path, "bad.txt");
        await File.WriteAllTextAsync(good, Story, TestContext.Current.CancellationToken);
        await File.WriteAllTextAsync(bad, shuffled, TestContext.Current.CancellationToken);

        var g = await CliRunner.RunAsync("perplexity", "--model", TestData.Stories260KGguf, "--text-file", good, "--output", "json");
        var b = await CliRunner.RunAsync("perplexity", "--model", TestData.Stories260KGguf, "--text-file", bad, "--output", "json");

        double Nll(string json) => JsonDocument.Parse(json).RootElement.GetProperty("nll").GetDouble();
        Assert.True(Nll(b.Output) > Nll(g.Output) + 1.0, $"story {Nll(g.Output)} vs shuffled {Nll(b.Output)}");
    }

    [Fact]
    public async Task TokenizeTextWithAndWithoutSpecialTokens()
    {
        GenerateCommandTests.SkipWithoutShared();
        var with = await CliRunner.RunAsync("tokenize", "--tokenizer", TestData.MistralTokenizerDir, "--text", "Hello world", "--output", "json");
        var without = await CliRunner.RunAsync("tokenize", "--tokenizer", TestData.MistralTokenizerDir, "--text", "Hello world", "--no-special");
        Assert.Equal("{\"ids\":[1,22557,1526]}", with.Output.Trim());
        Assert.Equal("22557 1526", without.Output.Trim());
    }

    [Fact]
    public async Task TokenizeJsonLinesPrintsOneLinePerInputLine()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var input = Path.Combine(dir.Path, "in.jsonl");
        await File.WriteAllLinesAsync(input, ["{\"text\": \"Hello world\"}", "{\"text\": \"<|begin_of_text|>\"}", "{\"text\": \"\"}"], TestContext.Current.CancellationToken);

        var (code, output, error) = await CliRunner.RunAsync("tokenize", "--tokenizer", TestData.Llama3TokenizerDir, "--input-file", input);

        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["{\"ids\":[9906,1917]}", "{\"ids\":[128000]}", "{\"ids\":[]}"], lines);
    }

    [Fact]
    public async Task TokenizeWithTheGgufVocabulary()
    {
        GenerateCommandTests.SkipWithoutShared();
        var (code, output, error) = await CliRunner.RunAsync("tokenize", "--tokenizer", TestData.Stories260KGguf, "--text", "Once upon a time", "--output", "json");
        Assert.True(code == 0, error);
        Assert.Equal("{\"ids\":[1,403,407,261,378]}", output.Trim());
    }

    [Fact]
    public async Task ABadJsonLineIsReportedWithItsLineNumber()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var input = Path.Combine(dir.Path, "in.jsonl");
        await File.WriteAllLinesAsync(input, ["{\"text\": \"ok\"}", "{\"text\": 5}"], TestContext.Current.CancellationToken);

        var (code, _, error) = await CliRunner.RunAsync("tokenize", "--tokenizer", TestData.MistralTokenizerDir, "--input-file", input);

        Assert.Equal(1, code);
        Assert.Contains(input + ":2", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TextAndInputFileAreMutuallyExclusive()
    {
        var (code, _, error) = await CliRunner.RunAsync("tokenize", "--tokenizer", "x", "--text", "a", "--input-file", "b");
        Assert.NotEqual(0, code);
        Assert.Contains("exactly one of --text and --input-file", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PerplexityOfAMissingTextFileIsAClearError()
    {
        var (code, _, error) = await CliRunner.RunAsync("perplexity", "--model", "m.gguf", "--text-file", "/nonexistent/t.txt");
        Assert.Equal(1, code);
        Assert.Contains("/nonexistent/t.txt", error, StringComparison.Ordinal);
    }
}
