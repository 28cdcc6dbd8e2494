namespace Petals.Benchmarks.Tests;

public sealed class FaultTableTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(4);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A small swarm: 4 blocks in 2 stages, each served twice, 2 ms RTT.</summary>
    private static FaultTableOptions Small(params string[] extra) => FaultTableOptions.Parse(
        ["--blocks", "4", "--hidden", "128", "--stages", "2", "--replicas", "2", "--rtt-ms", "2", "--lengths", "24", "--cap-s", "120", "--threads", "1", .. extra]);

    [Fact]
    public void Options_parse_lists_and_reject_bad_values_by_name()
    {
        var o = FaultTableOptions.Parse(["--rates", "0,1e-4,0.01", "--strategies", "alg1,restarts", "--lengths", "128,1024", "--cap-s", "30"]);
        Assert.Equal([0, 1e-4, 0.01], o.Rates);
        Assert.Equal([FaultStrategy.Algorithm1, FaultStrategy.CachingWithRestarts], o.Strategies);
        Assert.Equal([128, 1024], o.Lengths);
        Assert.Equal(3, o.RepetitionsFor(128));
        Assert.Equal(1, o.RepetitionsFor(1024));

        Assert.Contains("--rates must list probabilities in [0, 1), not '1.5'", Assert.Throws<ArgumentException>(() => FaultTableOptions.Parse(["--rates", "0,1.5"])).Message, StringComparison.Ordinal);
        Assert.Contains("--strategies takes restarts, no-caching and alg1, not 'cache'", Assert.Throws<ArgumentException>(() => FaultTableOptions.Parse(["--strategies", "cache"])).Message, StringComparison.Ordinal);
        Assert.Contains("--hidden must be a multiple of 64", Assert.Throws<ArgumentException>(() => FaultTableOptions.Parse(["--hidden", "100"])).Message, StringComparison.Ordinal);
        Assert.Contains("--stages (5) cannot exceed --blocks (4)", Assert.Throws<ArgumentException>(() => FaultTableOptions.Parse(["--blocks", "4", "--stages", "5"])).Message, StringComparison.Ordinal);
        Assert.Contains("Unknown fault-table option '--nope'", Assert.Throws<ArgumentException>(() => FaultTableOptions.Parse(["--nope", "1"])).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_baselines_generate_the_reference_tokens_and_pay_for_injected_failures_as_the_paper_defines()
    {
        var options = Small("--strategies", "restarts,no-caching");
        await using var table = await FaultTable.StartAsync(options, null, Ct).WaitAsync(Bound, Ct);
        Assert.Equal(4, table.Swarm.Servers.Count);
        Assert.Equal(2, table.Swarm.Servers.Count(s => s.Blocks.Start == 0));

        var clean = await table.RunAsync(FaultStrategy.CachingWithRestarts, 24, 0, 0, Ct).WaitAsync(Bound, Ct);
        Assert.True(clean.Finished && clean.TokensMatch, clean.ToJson());
        Assert.Equal((24, 0, 0L, 24), (clean.Steps, clean.Failures, clean.Recoveries, clean.ExecutedSteps));

        // p = 0.1 for each of the 2 servers of the chain before each of 24 steps: the seeded draws make several fail.
        var restarts = await table.RunAsync(FaultStrategy.CachingWithRestarts, 24, 0.1, 0, Ct).WaitAsync(Bound, Ct);
        Assert.True(restarts.Failures > 0, restarts.ToJson());
        Assert.True(restarts.TokensMatch, restarts.ToJson());

        // Every failure seen costs a restart from the first token: work is wasted, nothing is recovered in place.
        Assert.InRange(restarts.Recoveries, 1, restarts.Failures);
        Assert.True(restarts.ExecutedSteps > restarts.Steps, restarts.ToJson());
        Assert.Contains("aborted", restarts.FirstError, StringComparison.Ordinal);

        var noCaching = await table.RunAsync(FaultStrategy.NoCaching, 24, 0.1, 0, Ct).WaitAsync(Bound, Ct);
        Assert.True(noCaching.Finished, noCaching.ToJson());
        Assert.True(noCaching.Failures > 0, noCaching.ToJson());

        // Only the failed step is repeated: one retry per step that met a failure, never more forward passes than that.
        Assert.InRange(noCaching.Recoveries, 1, noCaching.Failures);
        Assert.Equal(24 + noCaching.Recoveries, noCaching.ExecutedSteps);
        Assert.Equal(table.Swarm.FailuresInjected, clean.Failures + restarts.Failures + noCaching.Failures);

        var report = FaultReport.ToMarkdown(options with { Rates = [0, 0.1] }, [clean, restarts, noCaching], table.LocalStepsPerSecond);
        Assert.Contains("| Caching with restarts |", report, StringComparison.Ordinal);
        Assert.Contains("| 24: p = 0 | 24: p = 1e-1 |", report, StringComparison.Ordinal);
        Assert.Contains($"| No caching | 24 | 1e-1 | 1 (1) |", report, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Algorithm_1_recovers_every_injected_failure_in_place_and_generates_the_reference_tokens()
    {
        var options = Small("--strategies", "alg1");
        await using var table = await FaultTable.StartAsync(options, null, Ct).WaitAsync(Bound, Ct);

        var run = await table.RunAsync(FaultStrategy.Algorithm1, 24, 0.1, 0, Ct).WaitAsync(Bound, Ct);
        Assert.True(run.Finished && !run.Failed, run.ToJson());
        Assert.True(run.TokensMatch, run.ToJson());
        Assert.True(run.Failures > 0, run.ToJson());

        // No step is repeated by the caller: each failure is repaired inside its step by replaying the failed span's history.
        Assert.Equal(24, run.ExecutedSteps);
        // Each failure seen costs one recovery; a replacement that fails in turn (attempt 2 or more of a step) costs another.
        Assert.InRange(run.FirstAttemptRecoveries, 1, run.Failures);
        Assert.InRange(run.Recoveries, run.FirstAttemptRecoveries, 5 * run.Failures);
        Assert.Equal(run.Recoveries, run.RecoveryMs.Count);
        Assert.Equal(run.Recoveries, run.RecoveryLog.Count);
        Assert.Equal(run.Failures, run.InjectionLog.Count);

        var back = FaultRun.FromJson(run.ToJson());
        Assert.Equal((run.Strategy, run.Steps, run.Recoveries, run.FirstAttemptRecoveries, run.ReplayedTokens), (back.Strategy, back.Steps, back.Recoveries, back.FirstAttemptRecoveries, back.ReplayedTokens));
        Assert.Equal(run.RecoveryMs, back.RecoveryMs);
        Assert.True(run.ReplayedTokens > 0, run.ToJson());
        Assert.All(run.RecoveryMs, ms => Assert.InRange(ms, 0, 60_000));

        var report = FaultReport.ToMarkdown(options with { Lengths = [24], Rates = [0.1] }, [run], table.LocalStepsPerSecond);
        Assert.Contains("| Algorithm 1 |", report, StringComparison.Ordinal);
        Assert.Contains("| Algorithm 1 / its p = 0 rate |", report, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_run_stops_at_the_cap_and_is_reported_as_not_finished()
    {
        var options = Small("--strategies", "restarts", "--cap-s", "1");
        await using var table = await FaultTable.StartAsync(options, null, Ct).WaitAsync(Bound, Ct);

        // Each of the 2 servers fails before a step with probability 0.6: 24 steps in a row almost never succeed.
        var run = await table.RunAsync(FaultStrategy.CachingWithRestarts, 24, 0.6, 0, Ct).WaitAsync(Bound, Ct);
        Assert.False(run.Finished, run.ToJson());
        Assert.False(run.Failed, run.ToJson());
        Assert.InRange(run.Seconds, 1, 60);
        var report = FaultReport.ToMarkdown(options with { Rates = [0.6] }, [run], table.LocalStepsPerSecond);
        Assert.Contains("| Caching with restarts | – |", report, StringComparison.Ordinal);
        Assert.Contains("no run finished within the 1 s cap", report, StringComparison.Ordinal);
    }
}
