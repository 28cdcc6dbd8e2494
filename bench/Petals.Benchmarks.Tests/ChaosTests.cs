using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using Petals.Benchmarks.Chaos;
using Petals.Models;

namespace Petals.Benchmarks.Tests;

/// <summary>The chaos driver's options, span checks and report (the processes themselves are tested in Petals.Cli.Tests).</summary>
public sealed class ChaosTests
{
    [Fact]
    public void Options_parse_with_defaults_and_count_the_kills()
    {
        var o = ChaosOptions.Parse(["--model", "m.gguf"]);
        Assert.Equal("m.gguf", o.Model);
        Assert.Equal(["0:3", "0:2", "2:5", "1:4", "3:5"], o.Spans.Select(s => s.ToString()));
        Assert.Equal(200, o.NewTokens);
        Assert.Equal(10, o.KillEvery);
        Assert.Equal(19, o.PlannedKills); // after 10, 20, ... 190: never after the last token, which needs no further step

        var small = ChaosOptions.Parse(["--model", "m", "--new-tokens", "40", "--kill-every", "8", "--max-kills", "3", "--spans", "0:2, 1:3,0:3", "--json", "--seed", "5"]);
        Assert.Equal(3, small.PlannedKills);
        Assert.Equal(4, (small with { MaxKills = 0 }).PlannedKills);
        Assert.Equal(4, (small with { NewTokens = 33, MaxKills = 0 }).PlannedKills);
        Assert.Equal(3, (small with { NewTokens = 32, MaxKills = 0 }).PlannedKills);
        Assert.True(small.Json);
        Assert.True(small.WarmUp);
        Assert.False(ChaosOptions.Parse(["--model", "m", "--cold"]).WarmUp);
        Assert.Equal(5, small.Seed);
        Assert.Equal([new BlockRange(0, 2), new BlockRange(1, 3), new BlockRange(0, 3)], small.Spans);
    }

    [Theory]
    [InlineData(new[] { "--new-tokens", "40" }, "--model is required")]
    [InlineData(new[] { "--model", "m", "--kill-every", "0" }, "--kill-every: '0' is not an integer >= 1")]
    [InlineData(new[] { "--model", "m", "--spans", "0:3,x" }, "--spans: 'x' is not a span")]
    [InlineData(new[] { "--model", "m", "--announce-interval", "-1" }, "--announce-interval: '-1' is not a positive number")]
    [InlineData(new[] { "--model", "m", "--kills", "3" }, "Unknown option '--kills'")]
    [InlineData(new[] { "--model" }, "--model needs a value")]
    public void Bad_options_are_named(string[] args, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => ChaosOptions.Parse(args));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Spans_must_survive_the_loss_of_any_one_server()
    {
        ChaosOptions.Parse(["--model", "m"]).Validate(5);
        var single = Assert.Throws<ArgumentException>(() => ChaosOptions.Parse(["--model", "m", "--spans", "0:3,0:2,2:5,4:5"]).Validate(5));
        Assert.Contains("without server 3 (2:5) block 3 is served by nobody", single.Message, StringComparison.Ordinal);
        var past = Assert.Throws<ArgumentException>(() => ChaosOptions.Parse(["--model", "m", "--spans", "0:6,0:5"]).Validate(5));
        Assert.Contains("0:6 is not a non-empty span within the model's 5 blocks", past.Message, StringComparison.Ordinal);
        var one = Assert.Throws<ArgumentException>(() => ChaosOptions.Parse(["--model", "m", "--spans", "0:5"]).Validate(5));
        Assert.Contains("at least two servers", one.Message, StringComparison.Ordinal);
        var every = Assert.Throws<ArgumentException>(() => (ChaosOptions.Parse(["--model", "m"]) with { KillEvery = 0 }).Validate(5));
        Assert.Contains("--kill-every must be at least 1, not 0", every.Message, StringComparison.Ordinal);
        var interval = Assert.Throws<ArgumentException>(() => (ChaosOptions.Parse(["--model", "m"]) with { AnnounceIntervalSeconds = double.NaN }).Validate(5));
        Assert.Contains("--announce-interval (NaN s)", interval.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void First_uncovered_block_agrees_with_a_block_by_block_count()
    {
        Prop.ForAll(
            Gen.Choose(1, 12).SelectMany(blocks => Gen.ListOf(Gen.Choose(0, blocks).SelectMany(a => Gen.Choose(0, blocks).Select(b => (Math.Min(a, b), Math.Max(a, b)))))
                .Select(spans => (blocks, spans))).ToArbitrary(),
            input =>
            {
                var (blocks, spans) = input;
                var ranges = spans.Where(s => s.Item1 < s.Item2).Select(s => new BlockRange(s.Item1, s.Item2)).ToArray();
                var expected = Enumerable.Range(0, blocks).Cast<int?>().FirstOrDefault(b => !ranges.Any(r => r.Contains(b!.Value)));
                return ChaosOptions.FirstUncovered(ranges, blocks) == expected;
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Percentiles_interpolate_between_ranks()
    {
        Assert.True(double.IsNaN(ChaosReport.Percentile([], 50)));
        Assert.Equal(7, ChaosReport.Percentile([7], 90));
        Assert.Equal(2.5, ChaosReport.Percentile([4, 1, 3, 2], 50));
        Assert.Equal(9.1, ChaosReport.Percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90), 10);
        Assert.Equal(10, ChaosReport.Percentile([10, 1, 5], 100));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChaosReport.Percentile([1], 101));
    }

    [Fact]
    public void The_report_matches_recoveries_to_kills_and_names_what_went_unrecovered()
    {
        var t0 = new DateTimeOffset(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);
        var first = new ChaosKill(10, 1, new BlockRange(0, 3), "aaaaaaaaaaaaaaaa", 101, t0, [new BlockRange(0, 3)]);
        var second = new ChaosKill(20, 3, new BlockRange(2, 5), "bbbbbbbbbbbbbbbb", 102, t0.AddSeconds(5), [new BlockRange(2, 3), new BlockRange(3, 5)]);
        var recovery = new ChaosRecovery(
            15, new BlockRange(0, 3), first.PeerId, "connection reset", ["0:2 by cccccccccccccccc", "2:3 by dddddddddddddddd"], 15,
            t0.AddMilliseconds(3), t0.AddMilliseconds(43), TimeSpan.FromMilliseconds(40), 1, first);
        var result = new ChaosResult(
            new ChaosOptions { Model = "/m/stories.gguf", NewTokens = 3, KillEvery = 1 }, [1, 5], [7, 8, 9], [7, 8, 9], [first, second], [recovery], 1.5, 0.5);

        Assert.True(result.MatchesLocal);
        Assert.Equal([second], result.UnrecoveredKills);
        Assert.Equal([40.0], result.DetectionToResumeMs);
        Assert.Equal([43.0], result.KillToResumeMs);

        var table = ChaosReport.Table(result);
        Assert.Contains("2 kills, 1 recoveries", table, StringComparison.Ordinal);
        Assert.Contains("output equals local generation: yes", table, StringComparison.Ordinal);
        Assert.Contains("0:2 by cccccccc, 2:3 by dddddddd", table, StringComparison.Ordinal);
        Assert.Contains("kill after 20 tokens of server 3 (2:5, peer bbbbbbbb): no recovery reported", table, StringComparison.Ordinal);
        Assert.Contains("detection->resume: median 40.0 ms, p90 40.0 ms", table, StringComparison.Ordinal);

        using var writer = new StringWriter();
        ChaosReport.WriteJsonLines(result, writer);
        var lines = writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal(["recovery", "kill", "summary"], lines.Select(l => l.GetProperty("type").GetString()));
        Assert.Equal(43.0, lines[0].GetProperty("kill_to_resume_ms").GetDouble(), 6);
        Assert.Equal(15, lines[0].GetProperty("replayed_tokens").GetInt32());
        Assert.Equal("2:5", lines[1].GetProperty("span").GetString());
        var summary = lines[2];
        Assert.True(summary.GetProperty("matches_local").GetBoolean());
        Assert.Equal(1, summary.GetProperty("unrecovered_kills").GetInt32());
        Assert.Equal("stories.gguf", summary.GetProperty("model").GetString());
        Assert.Equal(40.0, summary.GetProperty("detection_to_resume_ms").GetProperty("median").GetDouble(), 6);

        // A server holding two segments of the chain fails twice: both must be recovered.
        var half = new ChaosRecovery(25, new BlockRange(2, 3), second.PeerId, "reset", ["2:3 by eeee"], 25, t0.AddSeconds(6), t0.AddSeconds(6.1), TimeSpan.FromMilliseconds(100), 1, second);
        var stranger = new ChaosRecovery(30, new BlockRange(0, 2), "ffff", "timeout", ["0:2 by eeee"], 30, t0.AddSeconds(7), t0.AddSeconds(7.1), TimeSpan.FromMilliseconds(100), 1, null);
        Assert.Equal([second], (result with { Recoveries = [recovery, half] }).UnrecoveredKills);
        Assert.Empty((result with { Recoveries = [recovery, half, half with { Blocks = new BlockRange(3, 5), Attempt = 2 }] }).UnrecoveredKills);
        Assert.Equal([stranger], (result with { Recoveries = [recovery, stranger] }).UnexpectedRecoveries);

        var differs = result with { Generated = [7, 9, 9] };
        Assert.False(differs.MatchesLocal);
        Assert.Contains("NO (first difference at token 1)", ChaosReport.Table(differs), StringComparison.Ordinal);
    }
}
