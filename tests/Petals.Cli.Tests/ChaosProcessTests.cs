using System.Text.Json;
using System.Text.RegularExpressions;
using Petals.Benchmarks.Chaos;
using Petals.Cli.Commands;
using Petals.Client;
using Petals.Formats;
using Petals.Models;
using Petals.Testing;

namespace Petals.Cli.Tests;

/// <summary>
/// Fault tolerance with real processes: <c>petals serve</c> processes killed with SIGKILL while a client generates through
/// them, through the chaos driver of the benchmarks and through <c>petals generate --initial-peers</c>.
/// </summary>
public sealed partial class ChaosProcessTests
{
    /// <summary>Generous on purpose: a loaded 2-core machine starts a .NET process in seconds. The 150 ms target is the benchmark's.</summary>
    private static readonly TimeSpan RecoveryBound = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(170);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Killing_a_server_of_the_active_chain_every_ten_tokens_recovers_each_time_and_generates_as_locally()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var options = new ChaosOptions { Model = TestData.Stories260KGguf, NewTokens = 40, KillEvery = 10, Seed = 3, StartupTimeout = TimeSpan.FromSeconds(60) };
        using var log = new StringWriter();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(Bound);
        ChaosResult result;
        try
        {
            result = await ChaosRun.RunAsync(options, TextWriter.Synchronized(log), timeout.Token).WaitAsync(Bound + TimeSpan.FromSeconds(30), Ct);
        }
        catch (Exception e) when (e is not OperationCanceledException || !Ct.IsCancellationRequested)
        {
            throw new Xunit.Sdk.XunitException($"the chaos run failed: {e}\nits log:\n{log}");
        }

        var context = $"\nlog:\n{log}\n{ChaosReport.Table(result)}";
        Assert.True(result.MatchesLocal, "the output differs from local generation" + context);
        Assert.Equal(40, result.Generated.Count);
        Assert.True(result.Kills.Count == 3, $"{result.Kills.Count} kills" + context);
        Assert.Empty(result.UnexpectedRecoveries);

        // One recovery per segment of the chain the killed server ran (one, or two when an earlier recovery gave it two).
        foreach (var kill in result.Kills)
        {
            var blocks = result.Recoveries.Where(r => ReferenceEquals(r.Kill, kill)).Select(r => r.Blocks).ToArray();
            Assert.True(blocks.SequenceEqual(kill.ChainSegments), $"kill of {kill.PeerId} ({string.Join(", ", kill.ChainSegments)} in the chain) recovered {string.Join(", ", blocks)}" + context);
        }

        Assert.Empty(result.UnrecoveredKills);
        foreach (var recovery in result.Recoveries)
        {
            var kill = recovery.Kill!;
            Assert.Equal(kill.PeerId, recovery.FailedPeerId);
            Assert.Equal(result.PromptIds.Count + kill.AfterTokens - 1, recovery.Position); // the step after the kill failed
            Assert.Equal(recovery.Position + 1, recovery.ReplayedTokens); // the history and the failed step's token
            Assert.NotEmpty(recovery.Replacements);
            Assert.DoesNotContain(recovery.Replacements, r => r.EndsWith(kill.PeerId, StringComparison.Ordinal));
            Assert.True(recovery.DetectionToResume > TimeSpan.Zero && recovery.DetectionToResume < RecoveryBound, $"detection to resume {recovery.DetectionToResume}" + context);
            Assert.True(recovery.KillToResume >= recovery.DetectionToResume, $"kill to resume {recovery.KillToResume} is shorter than detection to resume {recovery.DetectionToResume}");
            Assert.True(recovery.KillToResume < RecoveryBound + RecoveryBound, $"kill to resume {recovery.KillToResume}" + context);
        }

        // Each kill took a different process, and the killed slots were restarted on their spans.
        Assert.Equal(3, result.Kills.Select(k => k.ProcessId).Distinct().Count());
    }

    [Fact]
    public async Task Generate_through_the_dht_prints_a_recovered_line_when_a_server_is_killed_and_generates_as_locally()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(Bound);
        var ct = timeout.Token;

        // Any one of these may die: the rest still cover the five blocks.
        var options = new ChaosOptions { Model = TestData.Stories260KGguf, Spans = [new(0, 3), new(3, 5), new(0, 5)], StartupTimeout = TimeSpan.FromSeconds(60), AnnounceIntervalSeconds = 10 };
        options.Validate(5);
        await using var swarm = await ChaosSwarm.StartAsync(options, 5, TextWriter.Null, ct);
        string modelId;
        using (var weights = ModelLoader.Open(TestData.Stories260KGguf))
        {
            modelId = ModelIdentity.Compute(TestData.Stories260KGguf, weights.Config);
        }

        await using (var client = await ClientDiscovery.JoinAsync(swarm.BootstrapAddress.ToString(), ct))
        await using (var sequence = new SwarmSequenceManager(client.Discovery, modelId, 5))
        {
            await sequence.StartAsync(ct);
            await swarm.WaitUntilAllOnlineAsync(sequence, ct);
        }

        string[] common = ["--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "60"];
        var local = await CliRunner.RunAsync(["generate", .. common]);
        Assert.True(local.ExitCode == 0, local.Error);

        // Once generation is under way (the prompt and some text printed), kill -9 the server of the chain's first span.
        using var error = new StringWriter();
        ChaosKill? kill = null;
        using var output = new WatchingWriter("Once upon a time".Length + 20, () =>
        {
            var chain = ChainLine().Match(error.ToString());
            Assert.True(chain.Success, $"generate printed no chain: {error}");
            var server = swarm.FindRunning(chain.Groups["peer"].Value);
            Assert.True(server is not null, $"the chain's first server {chain.Groups["peer"].Value} is no process of this test");
            kill = swarm.Kill(server, 0, [], TimeProvider.System);
        });
        string[] remote = ["generate", .. common, "--initial-peers", swarm.BootstrapAddress.ToString()];
        var code = await PetalsCommand.RunAsync(remote, output, error, ct).WaitAsync(Bound, Ct);

        Assert.True(code == 0, error.ToString());
        Assert.True(kill is not null, $"the generation ended before the kill: {output}");
        Assert.Equal(local.Output, output.ToString());
        var recovered = Assert.Single(error.ToString().Split('\n'), l => l.StartsWith("recovered ", StringComparison.Ordinal));
        using var json = JsonDocument.Parse(recovered["recovered ".Length..]);
        var root = json.RootElement;
        Assert.Equal(kill.PeerId, root.GetProperty("failed").GetString());
        var blocks = BlockRange.Parse(root.GetProperty("blocks").GetString()!);
        Assert.True(blocks.Start >= kill.Span.Start && blocks.End <= kill.Span.End, $"failed blocks {blocks} outside the killed span {kill.Span}");
        var replacements = root.GetProperty("replacements").EnumerateArray().Select(r => r.GetString()!).ToArray();
        Assert.NotEmpty(replacements);
        Assert.All(replacements, r => Assert.Matches(@"^\d+:\d+ by [0-9a-f]{40}$", r));
        Assert.DoesNotContain(replacements, r => r.EndsWith(kill.PeerId, StringComparison.Ordinal));
        Assert.InRange(root.GetProperty("position").GetInt32(), 5, 5 + 60);
        Assert.Equal(root.GetProperty("position").GetInt32() + 1, root.GetProperty("replayed_tokens").GetInt32()); // the history and the failed step's token
        Assert.InRange(root.GetProperty("detection_to_resume_ms").GetDouble(), 0, RecoveryBound.TotalMilliseconds);
    }

    [GeneratedRegex(@"^blocks \S+ on (?<peer>[0-9a-f]{40}) at ", RegexOptions.Multiline)]
    private static partial Regex ChainLine();

    /// <summary>Collects the output and runs an action once, when it first holds at least a given number of characters.</summary>
    private sealed class WatchingWriter(int threshold, Action action) : StringWriter(System.Globalization.CultureInfo.InvariantCulture)
    {
        private bool _fired;

        public override void Write(char value)
        {
            base.Write(value);
            Check();
        }

        public override void Write(string? value)
        {
            base.Write(value);
            Check();
        }

        public override void Write(char[] buffer, int index, int count)
        {
            base.Write(buffer, index, count);
            Check();
        }

        public override Task WriteAsync(string? value)
        {
            Write(value);
            return Task.CompletedTask;
        }

        public override Task WriteAsync(char value)
        {
            Write(value);
            return Task.CompletedTask;
        }

        public override Task WriteAsync(char[] buffer, int index, int count)
        {
            Write(buffer, index, count);
            return Task.CompletedTask;
        }

        private void Check()
        {
            if (!_fired && GetStringBuilder().Length >= threshold)
            {
                _fired = true;
                action();
            }
        }
    }
}
