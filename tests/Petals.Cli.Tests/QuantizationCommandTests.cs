using System.Text.Json;
using Petals.Testing;

namespace Petals.Cli.Tests;

/// <summary>
/// The weight-quantization flags: <c>--quant</c> on the commands that run blocks (serve, swarm, generate, perplexity) and
/// <c>--require-quant</c> on the clients (generate, swarm, status).
/// </summary>
public sealed class QuantizationCommandTests
{
    private const string Story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
        + "One day, she saw a big red ball in the park. She ran to the ball and kicked it very high. Lily was happy and laughed with her mom.";

    private const string UnknownQuant = "error: --quant: unknown weight quantization 'int4'; expected one of none, int8, nf4, q8_0, q4_k.";

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Perplexity_states_the_nll_the_token_count_and_the_quantization_for_each_quant()
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        var file = Path.Combine(dir.Path, "story.txt");
        await File.WriteAllTextAsync(file, Story, Ct);

        var reference = await CliRunner.RunAsync("perplexity", "--model", TestData.Stories260KGguf, "--text-file", file, "--output", "json");
        Assert.True(reference.ExitCode == 0, reference.Error);
        using var none = JsonDocument.Parse(reference.Output);
        var nll = none.RootElement.GetProperty("nll").GetDouble();
        Assert.Equal(79, none.RootElement.GetProperty("tokens").GetInt32());
        Assert.Equal("none", none.RootElement.GetProperty("quant").GetString());
        Assert.Equal("none", none.RootElement.GetProperty("weights").GetString());
        Assert.Equal(Math.Exp(nll), none.RootElement.GetProperty("perplexity").GetDouble(), 9);

        // int8 per-channel weights: within 5% of the fp32 NLL (the issue's target is +1%), over the same tokens.
        var int8 = await CliRunner.RunAsync("perplexity", "--model", TestData.Stories260KGguf, "--text-file", file, "--output", "json", "--quant", "INT8");
        Assert.True(int8.ExitCode == 0, int8.Error);
        using var quantized = JsonDocument.Parse(int8.Output);
        Assert.Equal("int8", quantized.RootElement.GetProperty("quant").GetString());
        Assert.Equal(79, quantized.RootElement.GetProperty("tokens").GetInt32());
        Assert.InRange(quantized.RootElement.GetProperty("nll").GetDouble(), nll * 0.95, nll * 1.05);

        var text = await CliRunner.RunAsync("perplexity", "--model", TestData.Stories260KGguf, "--text-file", file, "--quant", "none");
        Assert.True(text.ExitCode == 0, text.Error);
        Assert.Matches(@"^nll \d+\.\d{4} nats/token over 79 predicted tokens \(perplexity \d+\.\d{3}; quant none, weights none\)$", text.Output.Trim());
    }

    [Theory]
    [InlineData("perplexity", "--text-file", "story.txt")]
    [InlineData("serve", "--blocks", "0:5")]
    [InlineData("generate", "--prompt", "Hi")]
    public async Task An_unknown_quant_is_a_one_line_error_listing_the_valid_ones(string command, string option, string value)
    {
        GenerateCommandTests.SkipWithoutShared();
        using var dir = TestData.CreateTempDirectory();
        if (option == "--text-file")
        {
            value = Path.Combine(dir.Path, value);
            await File.WriteAllTextAsync(value, Story, Ct);
        }

        var (code, output, error) = await CliRunner.RunAsync([command, "--model", TestData.Stories260KGguf, option, value, "--quant", "int4"]).WaitAsync(Bound, Ct);

        Assert.Equal(1, code);
        Assert.Equal(string.Empty, output);
        Assert.Equal(UnknownQuant, Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error:", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData(new[] { "--quant", "int8", "--peers", "127.0.0.1:1" }, "--quant quantizes the blocks run in this process")]
    [InlineData(new[] { "--require-quant", "int8" }, "--require-quant needs --peers or --initial-peers")]
    [InlineData(new[] { "--require-quant", "q4 k", "--peers", "127.0.0.1:1", "--insecure" }, "error: --require-quant: the quantization 'q4 k' holds ' '")]
    public async Task Quantization_flags_in_the_wrong_place_are_clear_errors(string[] flags, string fragment)
    {
        GenerateCommandTests.SkipWithoutShared();
        var (code, _, error) = await CliRunner.RunAsync(["generate", "--model", TestData.Stories260KGguf, "--prompt", "Hi", .. flags]).WaitAsync(Bound, Ct);
        Assert.NotEqual(0, code);
        Assert.Contains(fragment, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Swarm_passes_quant_to_its_servers_which_report_it_and_a_requirement_nobody_meets_names_what_they_offer()
    {
        GenerateCommandTests.SkipWithoutShared();
        string[] common = ["swarm", "--model", TestData.Stories260KGguf, "--servers", "2", "--max-new-tokens", "4", "--threads", "1"];
        var swarm = await CliRunner.RunAsync([.. common, "--output", "json", "--quant", "none", "--require-quant", "none"]).WaitAsync(Bound, Ct);
        Assert.True(swarm.ExitCode == 0, swarm.Error);
        using (var stats = JsonDocument.Parse(swarm.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries)[1]))
        {
            Assert.All(stats.RootElement.GetProperty("servers").EnumerateArray(), s => Assert.Equal("none", s.GetProperty("stats").GetProperty("quantization").GetString()));
        }

        Assert.Equal(2, swarm.Error.Split('\n').Count(l => l.StartsWith("blocks ", StringComparison.Ordinal) && l.EndsWith(", weights none", StringComparison.Ordinal)));

        var bad = await CliRunner.RunAsync([.. common, "--quant", "none,nf4,int8"]).WaitAsync(Bound, Ct);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("error: --quant: 3 values for 2 servers; give one value for all or one per server (e.g. none,nf4,int8).", bad.Error, StringComparison.Ordinal);

        var none = await CliRunner.RunAsync([.. common, "--quant", "none", "--require-quant", "q4_k"]).WaitAsync(Bound, Ct);
        Assert.Equal(3, none.ExitCode);
        var line = Assert.Single(none.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.Matches(@"^error: no online server covers blocks 0:5 of model \S+ \(routing blocks 0:5; online spans: none; required weight quantization 'q4_k': the swarm offers 'none' \(0:3 by [0-9a-f]{8}…, 3:5 by [0-9a-f]{8}…\)\)$", line);
    }
}
