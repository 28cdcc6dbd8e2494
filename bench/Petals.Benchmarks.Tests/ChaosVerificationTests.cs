using System.Text.Json;
using Petals.Benchmarks.Chaos;
using Petals.Client;

namespace Petals.Benchmarks.Tests;

/// <summary>The chaos run's output checks (issue 12): <c>--verify-rate</c>, and the report of the checks.</summary>
public sealed class ChaosVerificationTests
{
    [Fact]
    public void Verify_rate_is_parsed_and_bounded()
    {
        Assert.Equal(0, ChaosOptions.Parse(["--model", "m"]).VerifyRate);
        Assert.Equal(0.25, ChaosOptions.Parse(["--model", "m", "--verify-rate", "0.25"]).VerifyRate);
        foreach (var bad in new[] { "1.5", "-1", "x" })
        {
            var e = Assert.Throws<ArgumentException>(() => ChaosOptions.Parse(["--model", "m", "--verify-rate", bad]));
            Assert.Contains($"--verify-rate must be between 0 and 1, not '{bad}'", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void The_report_carries_the_checks_and_omits_them_when_off()
    {
        var result = new ChaosResult(new ChaosOptions { Model = "/m/s.gguf", VerifyRate = 1 }, [1], [7], [7], [], [], 1, 0)
        {
            Verification = new VerificationStatistics(171, 70, 0, 9000, 1.03e-6),
        };

        Assert.Contains("output checks at rate 1: 171 run, 70 skipped, 0 mismatches, largest honest error 1.03E-06", ChaosReport.Table(result), StringComparison.Ordinal);
        using var writer = new StringWriter();
        ChaosReport.WriteJsonLines(result, writer);
        var summary = JsonDocument.Parse(writer.ToString().Trim().Split('\n')[^1]).RootElement;
        Assert.Equal(171, summary.GetProperty("output_checks").GetInt64());
        Assert.Equal(70, summary.GetProperty("output_checks_skipped").GetInt64());
        Assert.Equal(0, summary.GetProperty("output_mismatches").GetInt64());

        var off = result with { Verification = null };
        Assert.DoesNotContain("output checks", ChaosReport.Table(off), StringComparison.Ordinal);
        using var offWriter = new StringWriter();
        ChaosReport.WriteJsonLines(off, offWriter);
        Assert.DoesNotContain("output_checks", offWriter.ToString(), StringComparison.Ordinal);
    }
}
