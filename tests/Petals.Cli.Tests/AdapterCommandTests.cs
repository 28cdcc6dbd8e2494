using System.Text.Json;
using Petals.Backends.Cpu;
using Petals.Generation;
using Petals.Testing;

namespace Petals.Cli.Tests;

/// <summary><c>petals serve --adapters NAME=DIR,…</c> and <c>petals generate [--adapters NAME=DIR,…] --adapter NAME</c>.</summary>
public sealed class AdapterCommandTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static string Fixture(string name) => Path.Combine(TestData.RepositoryRoot, "tests", "Petals.Tests", "Formats", "Peft", "Fixtures", name);

    private static string Style => Fixture("stories260k-lora-qv-down");

    [Fact]
    public async Task Local_generation_with_a_named_adapter_is_the_adapted_models_and_differs_from_the_plain_one()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        string[] common = ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "24", "--output", "json", "--threads", "1"];
        var adapted = await CliRunner.RunAsync([.. common, "--adapters", $"style={Style},all={Fixture("stories260k-lora-all-bf16")}", "--adapter", "style"]);
        Assert.True(adapted.ExitCode == 0, adapted.Error);
        var plain = await CliRunner.RunAsync([.. common, "--adapters", $"style={Style}"]);
        Assert.True(plain.ExitCode == 0, plain.Error);

        using var model = CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 }), new Dictionary<string, string> { ["style"] = Style });
        var expected = new List<int>();
        await foreach (var t in model.GenerateAsync(model.EncodePrompt("Once upon a time"), new GenerationOptions { MaxNewTokens = 24, Adapter = "style" }, TestContext.Current.CancellationToken))
        {
            expected.Add(t);
        }

        Assert.Equal(expected, Ids(adapted.Output));
        Assert.NotEqual(Ids(plain.Output), Ids(adapted.Output));
    }

    [Theory]
    [InlineData("--adapters", "style", "not NAME=DIR")]
    [InlineData("--adapters", "bad name=/tmp", "'bad name'")]
    [InlineData("--adapters", "style=/nonexistent/adapter", "'/nonexistent/adapter' of adapter 'style' does not exist")]
    [InlineData("--adapter", "two words", "--adapter: the adapter name 'two words'")]
    [InlineData("--adapter", "rhymes", "No adapter named 'rhymes'")]
    public async Task Bad_adapter_flags_of_generate_are_clear_errors(string option, string value, string expected)
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var (code, _, error) = await CliRunner.RunAsync("generate", "--model", TestData.Stories260KGguf, "--prompt", "x", "--max-new-tokens", "2", option, value);
        Assert.Equal(1, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Generate_refuses_adapters_for_remote_blocks()
    {
        var (code, _, error) = await CliRunner.RunAsync("generate", "--model", "m.gguf", "--prompt", "x", "--peers", "127.0.0.1:1", "--adapters", $"style={Style}");
        Assert.Equal(1, code);
        Assert.Contains("the servers hold them (petals serve --adapters)", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Serve_loads_its_spans_adapters_and_names_a_broken_one()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var errors = TextWriter.Synchronized(stderr);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var run = PetalsCommand.RunAsync(
            ["serve", "--model", TestData.Stories260KGguf, "--blocks", "1:4", "--port", "0", "--threads", "1", "--insecure", "--adapters", $"style={Style}"],
            TextWriter.Synchronized(stdout), errors, stop.Token);
        var deadline = DateTime.UtcNow + Bound;
        while (!stdout.ToString().Contains("listening ", StringComparison.Ordinal))
        {
            Assert.False(run.IsCompleted, $"serve exited early: {stderr}");
            Assert.True(DateTime.UtcNow < deadline, "serve printed no listening line.");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.Contains("adapter style: LoRA r=4 scale=2 on [q_proj, v_proj, down_proj] for blocks 1:4", stderr.ToString(), StringComparison.Ordinal);
        await stop.CancelAsync();
        Assert.Equal(0, await run.WaitAsync(Bound, TestContext.Current.CancellationToken));

        var broken = Path.Combine(Path.GetTempPath(), "petals-cli-broken-adapter-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(broken);
        try
        {
            File.Copy(Path.Combine(Style, "adapter_config.json"), Path.Combine(broken, "adapter_config.json"));
            var (code, _, error) = await CliRunner.RunAsync("serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", "--port", "0", "--insecure", "--adapters", $"style={broken}");
            Assert.Equal(1, code);
            Assert.Contains("The LoRA adapter 'style'", error, StringComparison.Ordinal);
            Assert.Contains(Path.Combine(broken, "adapter_model.safetensors"), error, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(broken, recursive: true);
        }
    }

    private static List<int> Ids(string output)
    {
        using var doc = JsonDocument.Parse(output);
        return [.. doc.RootElement.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32())];
    }
}
