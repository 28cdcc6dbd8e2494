using Petals.Backends.Cpu;
using Petals.Generation;
using Petals.Testing;

namespace Petals.Cli.Tests;

public sealed class ConvertCommandTests
{
    private const string Text = "Once upon a time, there was a little dog named Max. Max liked to run in the big green park with his friend Tom.";

    [Fact]
    public async Task ConvertedDirectoryGivesTheSameTokensAndLogitsAsTheGgufFile()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var outDir = Path.Combine(dir.Path, "stories-hf");

        var (code, _, error) = await CliRunner.RunAsync("convert", "--model", TestData.Stories260KGguf, "--out", outDir);

        Assert.True(code == 0, error);
        Assert.True(File.Exists(Path.Combine(outDir, "config.json")));
        Assert.True(File.Exists(Path.Combine(outDir, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(outDir, "tokenizer.json")));

        using var original = CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, new CpuBlockExecutorFactory());
        using var converted = CausalLanguageModel.LoadLocal(outDir, new CpuBlockExecutorFactory());
        Assert.Equal(original.Config with { EosTokenIds = [] }, converted.Config with { EosTokenIds = [] });
        Assert.Equal(original.Config.EosTokenIds, converted.Config.EosTokenIds);

        var ids = original.EncodePrompt(Text);
        Assert.Equal(ids, converted.EncodePrompt(Text));
        var a = await original.ComputeNegativeLogLikelihoodAsync(ids, TestContext.Current.CancellationToken);
        var b = await converted.ComputeNegativeLogLikelihoodAsync(ids, TestContext.Current.CancellationToken);
        Assert.Equal(a.MeanNll, b.MeanNll, 1e-9);

        var greedy = new GenerationOptions { MaxNewTokens = 40 };
        Assert.Equal(
            await original.GenerateAsync(ids, greedy, TestContext.Current.CancellationToken).ToArrayAsync(TestContext.Current.CancellationToken),
            await converted.GenerateAsync(ids, greedy, TestContext.Current.CancellationToken).ToArrayAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task ConvertingSomethingThatIsNotGgufIsAClearError()
    {
        using var dir = TestData.CreateTempDirectory();
        var notGguf = Path.Combine(dir.Path, "model.gguf");
        await File.WriteAllTextAsync(notGguf, "this is not a gguf file", TestContext.Current.CancellationToken);

        var (code, _, error) = await CliRunner.RunAsync("convert", "--model", notGguf, "--out", Path.Combine(dir.Path, "out"));

        Assert.Equal(1, code);
        Assert.Contains(notGguf, error, StringComparison.Ordinal);
    }
}
