using Petals.Client;
using Petals.Models;
using Petals.Protocol;
using Petals.Routing;
using Petals.Testing.Execution;
using Petals.Tests.Client.Faults;
using Petals.Tests.Generation;

namespace Petals.Tests.Client.Verification;

/// <summary>
/// Spot checks of the servers' outputs (issue 12) over real block servers: a server that skips its blocks (echoes its
/// input) or adds noise is caught, banned, replaced and reported, and the tokens equal local generation's; without
/// checks the same server corrupts the output; honest servers of every split never trip a check.
/// </summary>
public sealed class OutputVerificationTests
{
    private const int NewTokens = 8;

    // The liar (server 0) runs the whole model, so the router's first chain is the liar alone; honest servers split it.
    private static readonly BlockRange[] LiarAndTwoHonestChains = [new(0, 4), new(0, 2), new(2, 4), new(0, 2), new(2, 4)];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_server_that_echoes_its_input_is_caught_by_a_third_opinion_banned_replaced_and_reported()
    {
        using var model = new TinyModel(4);
        await using var rig = await VerificationRig.StartAsync(model, LiarAndTwoHonestChains, (i, _) => i == 0);
        var expected = await rig.LocalGreedyAsync(NewTokens);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1 });
        Assert.Equal(["server-0"], remote.Spans.Select(s => s.PeerId));
        var mismatches = new List<OutputMismatch>();
        var recoveries = new List<SpanRecovery>();
        remote.VerificationFailed += (_, m) => mismatches.Add(m);
        remote.SpanRecovered += (_, r) => recoveries.Add(r);

        var tokens = await rig.GreedyAsync(remote, NewTokens);

        Assert.Equal(expected, tokens);
        var mismatch = Assert.Single(mismatches);
        Assert.Equal("server-0", mismatch.PeerId);
        Assert.Equal(OutputVerdict.ServerWrong, mismatch.Verdict);
        Assert.Equal(["server-0"], mismatch.Banned);
        Assert.Equal(new BlockRange(0, 4), mismatch.Blocks);
        Assert.Equal(0, mismatch.Position); // caught at the prefill, before its output became a token
        Assert.Equal(2, mismatch.Verifiers.Count);
        Assert.True(mismatch.Error > 0.05, $"an echo is far off: {mismatch.Error}");
        Assert.Equal(3e-4, mismatch.Tolerance, 6); // every server states fp32's 1e-4: the liar's plus the verifying chain's two
        Assert.Contains("server-0", remote.Sequence.BannedPeers);
        Assert.DoesNotContain(remote.Spans, s => s.PeerId == "server-0");
        var recovery = Assert.Single(recoveries);
        Assert.Equal("server-0", recovery.FailedPeerId);
        var error = Assert.IsType<OutputVerificationException>(recovery.Error);
        Assert.Equal(PeerFailureKind.WrongOutput, error.Kind);
        Assert.Same(mismatch, error.Mismatch);
        Assert.Equal(1, remote.Verification.Mismatches);
        Assert.True(remote.Verification.Checks >= 2 * NewTokens, $"{remote.Verification.Checks} checks");
        Assert.True(rig.Liars[0]!.Lies >= 1);
    }

    [Fact]
    public async Task The_conviction_outlives_a_success_and_the_base_ban()
    {
        using var model = new TinyModel(4);
        await using var rig = await VerificationRig.StartAsync(model, LiarAndTwoHonestChains, (i, _) => i == 0);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1 });
        await rig.GreedyAsync(remote, 2);
        remote.Sequence.Health.ReportSuccess("server-0");
        Assert.Contains("server-0", remote.Sequence.BannedPeers);
    }

    [Fact]
    public async Task Without_verification_the_same_liar_corrupts_the_output()
    {
        using var model = new TinyModel(4);
        await using var rig = await VerificationRig.StartAsync(model, LiarAndTwoHonestChains, (i, _) => i == 0);
        var expected = await rig.LocalGreedyAsync(NewTokens);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 0 });
        var mismatches = 0;
        remote.VerificationFailed += (_, _) => mismatches++;

        var tokens = await rig.GreedyAsync(remote, NewTokens);

        Assert.NotEqual(expected, tokens);
        Assert.Equal(0, mismatches);
        Assert.Equal(new VerificationStatistics(0, 0, 0, 0, 0), remote.Verification);
        Assert.Equal(NewTokens, rig.Liars[0]!.Lies);
        Assert.Empty(remote.Sequence.BannedPeers);
    }

    [Fact]
    public async Task Local_blocks_convict_a_liar_without_asking_any_server()
    {
        using var model = new TinyModel(4);
        await using var rig = await VerificationRig.StartAsync(model, [new(0, 4), new(0, 4)], (i, liar) =>
        {
            liar.Kind = LieKind.Noise;
            liar.NoiseScale = 0.01;
            return i == 0;
        });
        var expected = await rig.LocalGreedyAsync(NewTokens);
        using var local = RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 4));
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1, LocalExecutor = local });
        var mismatches = new List<OutputMismatch>();
        remote.VerificationFailed += (_, m) => mismatches.Add(m);
        var forwardsBefore = rig.Servers.Sum(s => s.GetStatistics().ForwardCalls);

        var tokens = await rig.GreedyAsync(remote, NewTokens);

        Assert.Equal(expected, tokens);
        var mismatch = Assert.Single(mismatches);
        Assert.Equal(("server-0", OutputVerdict.ServerWrong), (mismatch.PeerId, mismatch.Verdict));
        Assert.Equal(["local"], mismatch.Verifiers);
        Assert.InRange(mismatch.Error, 0.002, 0.05); // 1 % noise per value: about 1 % per row
        Assert.Equal(forwardsBefore, rig.Servers.Sum(s => s.GetStatistics().ForwardCalls));
        Assert.Equal(["server-1"], remote.Spans.Select(s => s.PeerId));
    }

    [Fact]
    public async Task A_server_lying_on_a_fraction_of_steps_is_caught_and_the_tokens_stay_honest()
    {
        using var model = new TinyModel(4);
        await using var rig = await VerificationRig.StartAsync(model, LiarAndTwoHonestChains, (i, liar) =>
        {
            liar.Fraction = 0.3;
            return i == 0;
        });
        var expected = await rig.LocalGreedyAsync(16);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1 });
        var mismatches = new List<OutputMismatch>();
        remote.VerificationFailed += (_, m) => mismatches.Add(m);

        var tokens = await rig.GreedyAsync(remote, 16);

        Assert.Equal(expected, tokens);
        var mismatch = Assert.Single(mismatches);
        Assert.Equal(("server-0", OutputVerdict.ServerWrong), (mismatch.PeerId, mismatch.Verdict));
        Assert.Equal(1, rig.Liars[0]!.Lies); // its first lie was its last
        Assert.True(rig.Liars[0]!.Steps > 1, "it answered honestly before it lied");
    }

    [Fact]
    public async Task Two_disagreeing_opinions_without_a_third_are_reported_unresolved_and_both_sides_banned()
    {
        using var model = new TinyModel(4);
        await using var rig = await VerificationRig.StartAsync(model, [new(0, 4), new(0, 2), new(2, 4)], (i, _) => i == 0);
        var expected = await rig.LocalGreedyAsync(NewTokens);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1 });
        var mismatches = new List<OutputMismatch>();
        var recoveries = new List<SpanRecovery>();
        remote.VerificationFailed += (_, m) => mismatches.Add(m);
        remote.SpanRecovered += (_, r) => recoveries.Add(r);

        var tokens = await rig.GreedyAsync(remote, NewTokens);

        var mismatch = Assert.Single(mismatches);
        Assert.Equal(OutputVerdict.Unresolved, mismatch.Verdict);
        Assert.Equal(["server-0", "server-1", "server-2"], mismatch.Banned.Order(StringComparer.Ordinal));
        Assert.Equal(["server-1", "server-2"], mismatch.Verifiers.Order(StringComparer.Ordinal));
        var error = Assert.IsType<OutputVerificationException>(Assert.Single(recoveries).Error);
        Assert.Equal(PeerFailureKind.OutputDisputed, error.Kind);

        // The disputed pair is the only route left, and checks skip what nobody unbanned can recompute: honest tokens.
        Assert.Equal(expected, tokens);
        Assert.True(remote.Verification.Skipped > 0);
    }

    [Fact]
    public async Task A_lying_verifier_is_convicted_by_the_third_opinion_and_the_honest_step_stands()
    {
        using var model = new TinyModel(4);

        // Server 0 (whole model, chosen for the session) is honest; server 1 lies only in the stateless forwards verifiers run.
        await using var rig = await VerificationRig.StartAsync(model, [new(0, 4), new(0, 4), new(0, 4)], (i, liar) =>
        {
            liar.LieOnSteps = false;
            liar.LieOnForwards = true;
            return i == 1;
        });
        var expected = await rig.LocalGreedyAsync(NewTokens);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1 }, o => o.MaxRecoveryAttempts = 0);
        var mismatches = new List<OutputMismatch>();
        remote.VerificationFailed += (_, m) => mismatches.Add(m);
        var session = remote.Spans.Single().PeerId;
        var liar = session == "server-1" ? null : "server-1";

        // Whichever verifier the throughput draw picks first, the liar is caught the first time it verifies.
        var tokens = await rig.GreedyAsync(remote, 24);

        Assert.Equal(expected.Take(NewTokens), tokens.Take(NewTokens));
        Assert.Equal(0, remote.Recoveries);
        if (liar is null)
        {
            Assert.Empty(mismatches); // the session ran on the liar, whose steps are honest
            return;
        }

        var mismatch = Assert.Single(mismatches);
        Assert.Equal((session, OutputVerdict.VerifierWrong), (mismatch.PeerId, mismatch.Verdict));
        Assert.Equal([liar], mismatch.Verifiers);
        Assert.Equal([liar], mismatch.Banned);
        Assert.Contains(liar, remote.Sequence.BannedPeers);
        Assert.DoesNotContain(session, remote.Sequence.BannedPeers);
    }

    [Fact]
    public async Task With_recovery_off_a_caught_liar_fails_the_step_with_the_mismatch()
    {
        using var model = new TinyModel(4);
        await using var rig = await VerificationRig.StartAsync(model, LiarAndTwoHonestChains, (i, _) => i == 0);
        await using var remote = await rig.ConnectAsync(new VerificationOptions { Rate = 1 }, o => o.MaxRecoveryAttempts = 0);

        var error = await Assert.ThrowsAsync<OutputVerificationException>(() => rig.GreedyAsync(remote, 2));

        Assert.Equal("server-0", error.Mismatch!.PeerId);
        Assert.Contains("verdict ServerWrong", error.Message, StringComparison.Ordinal);
        Assert.Contains("server-0", remote.Sequence.BannedPeers);
    }

    [Fact]
    public async Task Local_blocks_of_another_model_are_refused_before_connecting()
    {
        using var model = new TinyModel(4);
        using var other = new TinyModel(2);
        await using var rig = await VerificationRig.StartAsync(model, [new(0, 4)]);
        using var local = RandomModelFixture.Factory.Create(other.Weights, new BlockRange(0, 2));

        var error = await Assert.ThrowsAsync<ArgumentException>(() => rig.ConnectAsync(new VerificationOptions { Rate = 1, LocalExecutor = local }));

        Assert.Equal("options", error.ParamName);
        Assert.Contains("hidden size 16 and 2 blocks; this model has hidden size 16 and 4 blocks", error.Message, StringComparison.Ordinal);
    }
}
