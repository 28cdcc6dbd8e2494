using System.Text.Json;
using Petals.Testing;

namespace Petals.Cli.Tests;

/// <summary><c>--wire-codec int8</c> on the client commands: real server processes, and bad values refused.</summary>
public sealed class WireCodecCliTests
{
    private const int Tokens = 64;

    [Fact]
    public async Task Swarm_with_wire_codec_int8_agrees_with_local_generation_and_sends_under_half_the_fp32_step_bytes()
    {
        GenerateCommandTests.SkipWithoutShared();
        var local = await CliRunner.RunAsync("generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "64", "--output", "json");
        Assert.True(local.ExitCode == 0, local.Error);
        var swarm = await CliRunner.RunAsync(
            "swarm", "--model", TestData.Stories260KGguf, "--servers", "3", "--prompt", "Once upon a time", "--max-new-tokens", "64", "--output", "json", "--threads", "1", "--wire-codec", "int8");
        Assert.True(swarm.ExitCode == 0, swarm.Error);

        var lines = swarm.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        using var expected = JsonDocument.Parse(local.Output);
        using var generated = JsonDocument.Parse(lines[0]);
        int[] want = [.. expected.RootElement.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32())];
        int[] got = [.. generated.RootElement.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32())];
        Assert.Equal(Tokens, want.Length);
        Assert.Equal(Tokens, got.Length);
        var agreeing = want.Zip(got).Count(p => p.First == p.Second);
        Assert.True(agreeing >= 56, $"int8 agrees with fp32 on {agreeing} of {Tokens} tokens.");

        // fp32 decode steps alone would send 63 steps x 3 hops x (36 + 256) bytes; int8 sends 36 + 68 per step and hop,
        // plus the prefill and connection set-up (fp16's 36 + 128 would already exceed half).
        using var stats = JsonDocument.Parse(lines[1]);
        var sent = stats.RootElement.GetProperty("client_bytes_sent").GetInt64();
        Assert.InRange(sent, 63 * 3 * (36 + 68), 63 * 3 * (36 + 256) / 2);
    }

    [Theory]
    [InlineData("generate")]
    [InlineData("swarm")]
    public async Task An_unknown_wire_codec_is_an_input_error_listing_int8(string command)
    {
        GenerateCommandTests.SkipWithoutShared();
        string[] peers = command == "generate" ? ["--peers", "127.0.0.1:1"] : [];
        var (code, _, error) = await CliRunner.RunAsync([command, "--model", TestData.Stories260KGguf, .. peers, "--prompt", "Hi", "--wire-codec", "int4"]);
        Assert.Equal(1, code);
        Assert.Contains("int4", error, StringComparison.Ordinal);
        Assert.Contains("int8", error, StringComparison.Ordinal);
    }
}
