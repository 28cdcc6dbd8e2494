using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Petals.Client;
using Petals.Health;
using Petals.Models;
using Petals.Protocol;
using Petals.Tests.Client.Faults;
using Petals.Transport;

namespace Petals.Tests.Client;

/// <summary>One DHT of eight nodes (node 0 the client's, 1–7 the servers') and the tiny models, shared by the cases of the class.</summary>
public sealed class FaultToleranceFixture : IAsyncLifetime
{
    private readonly ConcurrentDictionary<int, Lazy<TinyModel>> _models = new();

    internal DiscoverySwarm Dht { get; private set; } = null!;

    internal TinyModel Model(int layers) => _models.GetOrAdd(layers, l => new Lazy<TinyModel>(() => new TinyModel(l))).Value;

    public async ValueTask InitializeAsync() =>
        Dht = await DiscoverySwarm.StartAsync(FaultCase.MaxServers + 1, TimeProvider.System, CancellationToken.None);

    public async ValueTask DisposeAsync()
    {
        await Dht.DisposeAsync();
        foreach (var model in _models.Values)
        {
            if (model.IsValueCreated)
            {
                model.Value.Dispose();
            }
        }
    }
}

/// <summary>
/// Algorithm 1 under random failures: random tiny models and swarms (every block served twice), random schedules of
/// crashes, disconnects, stalls, error frames and wrong-shape answers. The greedy tokens must equal a failure-free run's
/// on the same swarm exactly and every step's last hidden states within 1e-5 (a replayed prefill may differ from the
/// steps it replays in the last bit, see <see cref="ReplayIdentityTests"/>); the sessions of abandoned spans must be
/// freed on their servers, the history must stay within the session's length, and each failure must cost exactly one
/// recovery per span of the chain it hit. Failed servers are healed after each step but stay banned for the run, so later
/// failures often leave only banned servers for a block (see <see cref="Recovery_tries_a_healthy_banned_server_before_giving_up"/>).
/// </summary>
public sealed class FaultTolerancePropertyTests(FaultToleranceFixture fixture, ITestOutputHelper output) : IClassFixture<FaultToleranceFixture>
{
    private const float HiddenTolerance = 1e-5f;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Spot checks of every run's outputs at this rate (environment variable <c>PETALS_VERIFY_RATE</c>, default 0: off),
    /// to show that failures and recoveries never trip a check (issue 12: no false positives); every run then asserts
    /// that no check failed.
    /// </summary>
    private static readonly double VerifyRate =
        double.TryParse(Environment.GetEnvironmentVariable("PETALS_VERIFY_RATE"), NumberStyles.Float, CultureInfo.InvariantCulture, out var rate) && rate is >= 0 and <= 1 ? rate : 0;

    private long _bitDifferences;
    private long _checks;
    private long _checksSkipped;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static RemoteSequenceOptions Options => new()
    {
        LivenessTimeout = TimeSpan.FromMilliseconds(500),
        ConnectTimeout = TimeSpan.FromSeconds(3),
        RecoveryBackoff = TimeSpan.FromMilliseconds(10),
        Verification = new() { Rate = VerifyRate },
    };

    [Fact]
    public async Task Generation_through_random_failures_equals_a_failure_free_run()
    {
        var cases = 0;
        var failures = 0;
        var stopwatch = Stopwatch.StartNew();
        var property = Prop.ForAll(FaultCase.Arbitrary(), c =>
        {
            RunCaseAsync(c).GetAwaiter().GetResult();
            cases++;
            failures += c.Failures.Count;
        });

        // FsCheck blocks on each case: run it off the test's synchronization context.
        await Task.Run(() => property.Check(Config.QuickThrowOnFailure.WithMaxTest(25)), Ct);
        output.WriteLine($"{cases} cases, {failures} failures scheduled, {Interlocked.Read(ref _bitDifferences)} hidden values not bit-identical (all within {HiddenTolerance}), {stopwatch.Elapsed.TotalSeconds:0.0} s; output checks at rate {VerifyRate}: {Interlocked.Read(ref _checks)} run, {Interlocked.Read(ref _checksSkipped)} skipped, 0 mismatches");
    }

    [Fact]
    public async Task Recovery_tries_a_healthy_banned_server_before_giving_up()
    {
        // Found by the property: the whole-model server Y stalls at step 0 and is replaced by X (0:1) and Z (1:2); at
        // step 1 X crashes. Y and X are both banned now; Y is healthy again, X refuses connects. Between banned servers
        // of equal cost the router's choice depends on peer ids and measured round trips, so the scenario runs six
        // times with X and Y swapping peers: with the bug about half the runs give up after MaxRecoveryAttempts.
        for (var run = 0; run < 6; run++)
        {
            IReadOnlyList<BlockRange> spans = run % 2 == 0 ? [new(0, 1), new(0, 2), new(1, 2)] : [new(0, 2), new(0, 1), new(1, 2)];
            var c = new FaultCase(2, spans, 2, 3, [new ScheduledFailure(0, FaultKind.Stall, 0), new ScheduledFailure(1, FaultKind.Crash, 0)]);
            var result = await RunCaseAsync(c);
            Assert.Equal(2, result.Recoveries.Count);
        }
    }

    [Fact]
    public async Task A_crashed_server_is_replaced_and_the_recovery_names_it()
    {
        var recovery = await RunOneFailureAsync(FaultKind.Crash);
        var error = Assert.IsType<TransportException>(FindCause<TransportException>(recovery.Error));
        Assert.Equal(TransportErrorKind.Aborted, error.Kind);
        Assert.Contains("fault injected: server killed", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_lost_connection_is_replaced_and_the_recovery_names_it()
    {
        var recovery = await RunOneFailureAsync(FaultKind.Disconnect);
        var error = Assert.IsType<TransportException>(FindCause<TransportException>(recovery.Error));
        Assert.Contains("fault injected: connection lost", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_stalled_server_is_detected_by_liveness_and_replaced()
    {
        var recovery = await RunOneFailureAsync(FaultKind.Stall);
        var error = Assert.IsType<PeerUnresponsiveException>(FindCause<TimeoutException>(recovery.Error));
        Assert.Contains("not even a reply to a ping (liveness timeout 500 ms)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_answering_an_error_is_replaced_and_the_recovery_carries_the_error()
    {
        var recovery = await RunOneFailureAsync(FaultKind.ErrorFrame);
        var error = Assert.IsType<ProtocolException>(FindCause<ProtocolException>(recovery.Error));
        Assert.Equal(ProtocolErrorCode.Internal, error.Code);
        Assert.Contains("fault injected: step", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_answering_the_wrong_shape_is_replaced_and_the_recovery_says_so()
    {
        var recovery = await RunOneFailureAsync(FaultKind.WrongShape);
        var error = Assert.IsType<ProtocolException>(FindCause<ProtocolException>(recovery.Error));
        Assert.Equal(ProtocolErrorCode.BadShape, error.Code);
        Assert.Contains("were expected", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// 4 layers on servers [0:2, 0:2, 2:4, 2:4] and a prompt of 3 tokens; before step 2 (position 4) the second span of
    /// the chain fails as <paramref name="kind"/> says. Checks the run and the recovery's fields; returns the recovery.
    /// </summary>
    private async Task<SpanRecovery> RunOneFailureAsync(FaultKind kind)
    {
        var c = new FaultCase(4, [new(0, 2), new(0, 2), new(2, 4), new(2, 4)], 3, 5, [new ScheduledFailure(2, kind, 1)]);
        var run = await RunCaseAsync(c);
        var recovery = Assert.Single(run.Recoveries);
        var target = run.Targets[0];
        Assert.Equal(4, recovery.Position); // 3 prompt tokens + 1 generated before step 2
        Assert.Equal(new BlockRange(2, 4), recovery.Blocks);
        Assert.Equal(target.PeerId, recovery.FailedPeerId);
        Assert.Equal(target.Address.WithPeerId(null), recovery.FailedAddress.WithPeerId(null));
        Assert.Equal(5, recovery.ReplayedTokens); // the history and the failed step's token
        Assert.Equal(1, recovery.Attempt);
        var replacement = Assert.Single(recovery.Replacements);
        Assert.Equal(new BlockRange(2, 4), replacement.Blocks);
        Assert.NotEqual(target.PeerId, replacement.PeerId);
        Assert.True(recovery.ResumedAt >= recovery.DetectedAt);
        Assert.True(recovery.DetectionToResume >= TimeSpan.Zero && recovery.DetectionToResume < Bound);
        Assert.Equal(run.FinalChain[1].PeerId, replacement.PeerId);
        return recovery;
    }

    /// <summary>Adds the sequence's output checks to the counts; no check may have failed (failures are no lies).</summary>
    private void CountChecks(RemoteTransformerBlocks remote)
    {
        var stats = remote.Verification;
        Assert.True(stats.Mismatches == 0, $"an honest server failed an output check: {stats}");
        Interlocked.Add(ref _checks, stats.Checks);
        Interlocked.Add(ref _checksSkipped, stats.Skipped);
    }

    private sealed record CaseRun(IReadOnlyList<SpanRecovery> Recoveries, IReadOnlyList<RemoteSpanInfo> Targets, IReadOnlyList<RemoteSpanInfo> FinalChain);

    /// <summary>Runs <paramref name="c"/> failure-free and with its failures on the same swarm; throws, naming the case, when a property fails.</summary>
    private async Task<CaseRun> RunCaseAsync(FaultCase c)
    {
        var model = fixture.Model(c.Layers);
        await using var swarm = await FaultSwarm.StartAsync(fixture.Dht, model, c.Spans, Ct).WaitAsync(Bound, Ct);
        var log = new StringBuilder();
        try
        {
            // The failure-free run on the same swarm.
            (List<int> Tokens, List<float[]> LastHidden) expected;
            await using (var sequence = await swarm.StartSequenceAsync(Ct))
            await using (var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.ClientTransport, sequence, model.Config, Options, Ct).WaitAsync(Bound, Ct))
            await using (var session = await remote.OpenSessionAsync(1, c.MaxLength, Ct))
            {
                expected = await model.GreedyAsync(session, c.Prompt, c.NewTokens, null, null, Ct).WaitAsync(Bound, Ct);
                CountChecks(remote);
            }

            await WaitForSessionsAsync(swarm, [], "after the failure-free run");

            // The same run with the failures (a fresh sequence manager: no bans carried over).
            await using var faultySequence = await swarm.StartSequenceAsync(Ct);
            await using var faulty = await RemoteTransformerBlocks.ConnectAsync(swarm.ClientTransport, faultySequence, model.Config, Options, Ct).WaitAsync(Bound, Ct);
            var recoveries = new List<SpanRecovery>();
            faulty.SpanRecovered += (_, r) => recoveries.Add(r);
            var targets = new List<RemoteSpanInfo>();
            var hits = 0;
            (List<int> Tokens, List<float[]> LastHidden) actual;
            IReadOnlyList<RemoteSpanInfo> finalChain;
            await using (var session = await faulty.OpenSessionAsync(1, c.MaxLength, Ct))
            {
                var probe = new SessionProbe(session);
                actual = await model.GreedyAsync(
                    session,
                    c.Prompt,
                    c.NewTokens,
                    beforeStep: step =>
                    {
                        foreach (var failure in c.Failures.Where(f => f.Step == step))
                        {
                            var chain = probe.CurrentSpans;
                            var target = chain[failure.ChainIndex % chain.Count];
                            var index = swarm.IndexOf(target.PeerId);
                            var aborted = swarm.Inject(failure.Kind, index);
                            targets.Add(target);

                            // A lost server fails every span it runs in the chain; a bad answer fails one step of one span.
                            hits += failure.Kind is FaultKind.Crash or FaultKind.Disconnect or FaultKind.Stall ? chain.Count(s => s.PeerId == target.PeerId) : 1;
                            log.Append(CultureInfo.InvariantCulture, $"step {step}: {ScheduledFailure.Describe(failure.Kind)} of server {index} ({target.Blocks}) in chain [{string.Join(",", chain.Select(s => s.Blocks))}], {aborted} streams aborted; ");
                            if (failure.Kind is FaultKind.Crash or FaultKind.Disconnect)
                            {
                                Assert.True(aborted > 0, "the chain had no open stream to the server it runs on");
                            }
                        }

                        return Task.CompletedTask;
                    },
                    afterStep: async step =>
                    {
                        swarm.Heal();
                        Assert.InRange(probe.MaxHistoryPositions, 0, c.MaxLength);
                        await WaitForSessionsAsync(swarm, probe.CurrentSpans, $"after step {step}");
                    },
                    Ct).WaitAsync(Bound, Ct);
                finalChain = probe.CurrentSpans;
            }

            await WaitForSessionsAsync(swarm, [], "after the session was disposed");
            CountChecks(faulty);
            Assert.Equal(expected.Tokens, actual.Tokens);
            for (var step = 0; step < expected.LastHidden.Count; step++)
            {
                // Within 1e-5, not bit for bit: a replayed prefill may differ from the steps it replays in the last bit (ReplayIdentityTests).
                var (e, a) = (expected.LastHidden[step], actual.LastHidden[step]);
                var largest = e.Zip(a).Max(p => Math.Abs(p.First - p.Second));
                Assert.True(largest <= HiddenTolerance, string.Create(CultureInfo.InvariantCulture,
                    $"the hidden states of step {step} differ from the failure-free run's in {e.Zip(a).Count(p => p.First != p.Second)} of {e.Length} values, by up to {largest:G3}"));
                Interlocked.Add(ref _bitDifferences, e.Zip(a).Count(p => p.First != p.Second));
            }

            Assert.Equal(hits, faulty.Recoveries);
            Assert.Equal(hits, recoveries.Count);
            foreach (var recovery in recoveries)
            {
                Assert.Equal(recovery.Blocks.Start, recovery.Replacements[0].Blocks.Start);
                Assert.Equal(recovery.Blocks.End, recovery.Replacements[^1].Blocks.End);
                Assert.InRange(recovery.ReplayedTokens, recovery.Position + 1, c.MaxLength);
            }

            return new CaseRun(recoveries, targets, finalChain);
        }
        catch (Exception e) when (e is not OperationCanceledException || !Ct.IsCancellationRequested)
        {
            throw new InvalidOperationException($"Case {c} failed: {e.Message} Injected: {log}", e);
        }
    }

    /// <summary>Waits until each server holds exactly one session per span of <paramref name="chain"/> it runs (none when not in it).</summary>
    private static async Task WaitForSessionsAsync(FaultSwarm swarm, IReadOnlyList<RemoteSpanInfo> chain, string when)
    {
        var expected = swarm.Servers.Select((_, i) => chain.Count(s => s.PeerId == swarm.Dht.Peers[i + 1].LocalPeerId)).ToArray();
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            var actual = swarm.Servers.Select(s => s.GetStatistics().ActiveSessions).ToArray();
            if (actual.SequenceEqual(expected))
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, $"{when}: the servers hold [{string.Join(",", actual)}] sessions; [{string.Join(",", expected)}] expected (chain [{string.Join(",", chain.Select(s => s.Blocks))}]).");
            await Task.Delay(10, Ct);
        }
    }

    private static T? FindCause<T>(Exception error)
        where T : Exception
    {
        for (Exception? e = error; e is not null; e = e.InnerException)
        {
            if (e is T found)
            {
                return found;
            }
        }

        return null;
    }
}
