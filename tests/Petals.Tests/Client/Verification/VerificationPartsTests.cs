using System.Buffers.Binary;
using Petals.Client;
using Petals.Execution;
using Petals.Health;
using Petals.Models;
using Petals.Protocol;
using Petals.Routing;
using Petals.Testing.Execution;
using Petals.Testing.Time;
using Petals.Tests.Client.Faults;
using Petals.Tests.Generation;
using Petals.Tests.Protocol;

namespace Petals.Tests.Client.Verification;

/// <summary>The pieces of output verification on their own: the comparison, the options, the stated bound on the wire, the conviction ban, the lying executor.</summary>
public sealed class VerificationPartsTests
{
    [Fact]
    public void The_relative_error_is_per_row_scale_free_and_infinite_for_non_finite_rows()
    {
        // Two rows of width 2, positions 1..2 of a reference of 3 positions.
        float[] reference = [9, 9, 3, 4, 30, 40];
        float[] same = [3, 4, 30, 40];
        Assert.Equal(0, OutputVerifier.RelativeError(same, reference, 1, 3, 1, 2));

        // Row 1 off by (0, 0.5) of norm 5: 0.1; row 2 off by (0, 5) of norm 50: the same 0.1 at ten times the scale.
        float[] off = [3, 4.5f, 30, 45];
        Assert.Equal(0.5 / Math.Sqrt((3 * 3) + (4.5 * 4.5)), OutputVerifier.RelativeError(off, reference, 1, 3, 1, 2), 6);
        float[] scaled = [.. off.Select(v => v * 1000)];
        float[] scaledReference = [.. reference.Select(v => v * 1000)];
        Assert.Equal(OutputVerifier.RelativeError(off, reference, 1, 3, 1, 2), OutputVerifier.RelativeError(scaled, scaledReference, 1, 3, 1, 2), 6);

        // The worst row counts; zero rows agree with zero rows; NaN and infinity never pass.
        Assert.Equal(1, OutputVerifier.RelativeError([0, 0, 30, 40], reference, 1, 3, 1, 2));
        Assert.Equal(0, OutputVerifier.RelativeError([0, 0], [0, 0], 1, 1, 0, 2));
        Assert.Equal(double.PositiveInfinity, OutputVerifier.RelativeError([float.NaN, 4, 30, 40], reference, 1, 3, 1, 2));
        Assert.Equal(double.PositiveInfinity, OutputVerifier.RelativeError([3, 4, float.PositiveInfinity, 40], reference, 1, 3, 1, 2));

        // A batch of two: rows of the second sequence sit after the first's positions in both layouts.
        float[] batchReference = [1, 0, 2, 0, 3, 0, 4, 0];
        Assert.Equal(0, OutputVerifier.RelativeError([2, 0, 4, 0], batchReference, 2, 2, 1, 2));
        Assert.Equal(0.5, OutputVerifier.RelativeError([2, 0, 2, 0], batchReference, 2, 2, 1, 2), 6);
    }

    [Fact]
    public void Options_out_of_range_are_refused_with_their_name()
    {
        Assert.Equal("Rate", Assert.Throws<ArgumentOutOfRangeException>(() => new VerificationOptions { Rate = 1.5 }.Validate()).ParamName);
        Assert.Equal("Rate", Assert.Throws<ArgumentOutOfRangeException>(() => new VerificationOptions { Rate = double.NaN }.Validate()).ParamName);
        Assert.Equal("Rate", Assert.Throws<ArgumentOutOfRangeException>(() => new VerificationOptions { Rate = -0.1 }.Validate()).ParamName);
        Assert.Equal("MaxTolerance", Assert.Throws<ArgumentOutOfRangeException>(() => new VerificationOptions { MaxTolerance = 0 }.Validate()).ParamName);
        Assert.Equal("AssumedServerError", Assert.Throws<ArgumentOutOfRangeException>(() => new VerificationOptions { MaxTolerance = 0.01, AssumedServerError = 0.02 }.Validate()).ParamName);
        Assert.Equal("Verification", Assert.Throws<ArgumentNullException>(() => new RemoteSequenceOptions { Verification = null! }.Validate()).ParamName);
        Assert.Equal("Rate", Assert.Throws<ArgumentOutOfRangeException>(() => new RemoteSequenceOptions { Verification = new() { Rate = 2 } }.Validate()).ParamName);
        new VerificationOptions { Rate = 1 }.Validate();
        Assert.False(new VerificationOptions().Enabled);

        var options = new RemoteSequenceOptions { Verification = new() { Rate = 0.25 } };
        var clone = options.Clone();
        clone.Verification.Rate = 1;
        Assert.Equal(0.25, options.Verification.Rate);
    }

    [Fact]
    public void A_numeric_bound_must_be_a_fraction_with_a_short_format_name()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new NumericErrorBound(1.5, "x"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NumericErrorBound(double.NaN, "x"));
        Assert.Throws<ArgumentException>(() => new NumericErrorBound(0.1, ""));
        Assert.Throws<ArgumentException>(() => new NumericErrorBound(0.1, new string('q', 33)));
        Assert.Equal((1e-4, "fp32"), (NumericErrorBound.Fp32.RelativeError, NumericErrorBound.Fp32.Format));
    }

    [Fact]
    public void Servers_state_their_executors_bound_in_protocol_1_1_info_and_omit_it_for_1_0()
    {
        using var model = new TinyModel(2);
        using var executor = new BoundExecutor(RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2)), new NumericErrorBound(0.02, "q8_0"));
        var server = new Petals.Server.BlockServer(executor, new Petals.Server.BlockServerOptions { Blocks = new(0, 2), ModelId = "m" });
        Assert.Equal(0.02f, server.CreateInfo(1).StatedError);
        Assert.Null(server.CreateInfo(0).StatedError);
        Assert.Equal(3, ConnectionPreamble.CurrentVersionMinor);

        using var plain = RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2));
        Assert.Equal(1e-4f, new Petals.Server.BlockServer(plain, new Petals.Server.BlockServerOptions { Blocks = new(0, 2), ModelId = "m" }).CreateInfo().StatedError);
    }

    [Fact]
    public void A_stated_bound_outside_zero_to_one_is_refused_on_both_ends()
    {
        var info = new InfoResponse(1, 1, "m", new BlockRange(0, 2), 16, Petals.Tensors.TensorDType.F32, WireCodecs.All, 10, 1 << 20, 1 << 20, 8, 8);
        Assert.Throws<InvalidOperationException>(() => ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, info with { StatedError = 2 })]));

        // A valid frame whose last four bytes are patched to 2.0f.
        var bytes = ProtocolTestKit.Encode(ProtocolLimits.Default, [(1u, info with { StatedError = 0.5f })]);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(bytes.Length - 4), 2f);
        using var reader = new ProtocolReader(ProtocolTestKit.Filled(bytes), ProtocolLimits.Default);
        var error = Assert.Throws<ProtocolException>(() => ProtocolTestKit.ReadNow(reader));
        Assert.Equal(ProtocolErrorCode.MalformedFrame, error.Code);
        Assert.Contains("statedError", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_conviction_bans_for_the_long_wrong_output_ban_and_no_success_lifts_it()
    {
        var time = new ManualTimeProvider();
        var policy = new PeerHealthPolicy(new PeerHealthOptions { BanBase = TimeSpan.FromSeconds(10), WrongOutputBan = TimeSpan.FromHours(2) }, time);
        Assert.Equal(TimeSpan.FromHours(2), policy.ReportFailure("liar", PeerFailureKind.WrongOutput));
        policy.ReportSuccess("liar");
        Assert.Equal(["liar"], policy.GetBannedPeers());
        time.Advance(TimeSpan.FromHours(2) - TimeSpan.FromTicks(1));
        Assert.Equal(["liar"], policy.GetBannedPeers());
        time.Advance(TimeSpan.FromTicks(1));
        Assert.Empty(policy.GetBannedPeers());

        // A dispute is an ordinary failure: the base ban, lifted by a success.
        Assert.Equal(TimeSpan.FromSeconds(10), policy.ReportFailure("maybe", PeerFailureKind.OutputDisputed));
        policy.ReportSuccess("maybe");
        Assert.Empty(policy.GetBannedPeers());
        Assert.Equal("WrongOutputBan", Assert.Throws<ArgumentOutOfRangeException>(() => new PeerHealthOptions { WrongOutputBan = TimeSpan.Zero }.Validate()).ParamName);
    }

    [Fact]
    public void The_classifier_reports_a_failed_check_as_wrong_output_or_disputed()
    {
        OutputMismatch Mismatch(OutputVerdict verdict) => new("p", Petals.Transport.PeerAddress.Parse("mem://p"), new(0, 2), 3, 1, 0.5, 1e-4, ["q"], verdict, ["p"]);
        Assert.Equal(PeerFailureKind.WrongOutput, PeerFailureClassifier.Classify(new OutputVerificationException(Mismatch(OutputVerdict.ServerWrong)), TestContext.Current.CancellationToken));
        Assert.Equal(PeerFailureKind.OutputDisputed, PeerFailureClassifier.Classify(new OutputVerificationException(Mismatch(OutputVerdict.Unresolved)), TestContext.Current.CancellationToken));
        Assert.Equal("wrong_output", PeerFailureKind.WrongOutput.Value);
        Assert.Equal("output_disputed", PeerFailureKind.OutputDisputed.Value);
    }

    [Fact]
    public void A_history_forgets_rejected_positions_only_within_what_it_holds()
    {
        using var history = new SpanHistory(1, 2, 8);
        history.Append([1, 2, 3, 4, 5, 6], 3, 0, 0, 3);
        history.Truncate(1);
        Assert.Equal(1, history.Positions);
        history.Append([7, 8], 1, 0, 1, 1);
        var read = new float[4];
        history.Read(0, 2, read);
        Assert.Equal([1, 2, 7, 8], read);
        Assert.Throws<ArgumentOutOfRangeException>(() => history.Truncate(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => history.Truncate(-1));
    }

    [Fact]
    public void The_lying_executor_echoes_or_adds_noise_on_the_chosen_passes_and_keeps_its_cache_honest()
    {
        using var model = new TinyModel(2);
        using var honest = RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2));
        using var liar = new LyingBlockExecutor(RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2)));
        var random = new Random(3);
        float[] Input() => [.. Enumerable.Range(0, 2 * TinyModel.Hidden).Select(_ => (float)random.NextDouble())];

        using var honestCache = honest.CreateCache(1, 8);
        using var liarCache = liar.CreateCache(1, 8);
        var prefill = Input();
        var (expected, answer) = (prefill.ToArray(), prefill.ToArray());
        honest.Forward(expected, 1, 2, honestCache);
        liar.Forward(answer, 1, 2, liarCache);
        Assert.Equal(prefill, answer); // echoed

        // The next step, honest now, matches: the cache was built honestly under the lie.
        liar.Enabled = false;
        var step = Input()[..TinyModel.Hidden];
        var (e2, a2) = (step.ToArray(), step.ToArray());
        honest.Forward(e2, 1, 1, honestCache);
        liar.Forward(a2, 1, 1, liarCache);
        Assert.Equal(e2, a2);

        // Stateless passes are honest unless asked; noise is relative to the row.
        liar.Enabled = true;
        var (e3, a3) = (prefill.ToArray(), prefill.ToArray());
        honest.Forward(e3, 1, 2, null);
        liar.Forward(a3, 1, 2, null);
        Assert.Equal(e3, a3);
        liar.LieOnForwards = true;
        liar.Kind = LieKind.Noise;
        liar.NoiseScale = 0.1;
        liar.Forward(a3 = prefill.ToArray(), 1, 2, null);
        var error = OutputVerifier.RelativeError(a3, e3, 1, 2, 0, TinyModel.Hidden);
        Assert.InRange(error, 0.02, 0.5);
        Assert.Equal((2L, 2L, 2L), (liar.Steps, liar.Forwards, liar.Lies));

        // A fraction lies on about that share of passes, repeatably for a seed.
        using var sometimes = new LyingBlockExecutor(RandomModelFixture.Factory.Create(model.Weights, new BlockRange(0, 2)), seed: 9) { Fraction = 0.25, LieOnForwards = true };
        for (var i = 0; i < 400; i++)
        {
            sometimes.Forward(Input(), 1, 2, null);
        }

        Assert.InRange(sometimes.Lies, 70, 130);
        Assert.Throws<ArgumentOutOfRangeException>(() => sometimes.Fraction = 1.1);
        Assert.Throws<ArgumentOutOfRangeException>(() => sometimes.NoiseScale = 0);
    }

    private sealed class BoundExecutor(IBlockExecutor inner, NumericErrorBound bound) : DelegatingBlockExecutor(inner)
    {
        public override object? GetService(Type serviceType, object? serviceKey = null) =>
            serviceType == typeof(NumericErrorBound) ? bound : base.GetService(serviceType, serviceKey);
    }
}
