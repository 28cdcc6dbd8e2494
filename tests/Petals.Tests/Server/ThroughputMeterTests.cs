using Petals.Execution;
using Petals.Models;
using Petals.Server;
using Petals.Tensors;
using Petals.Testing.Time;
using Petals.Tests.Generation;

namespace Petals.Tests.Server;

/// <summary>
/// The meter's statistics on the real CPU executor of a random model, timed by a manual clock that a decorator advances
/// by a chosen amount per pass: the figures are exact and nothing sleeps.
/// </summary>
public sealed class ThroughputMeterTests : IDisposable
{
    private static readonly BlockRange Span = new(1, 3);
    private readonly RandomModelFixture _model = new(TensorDType.F32, tied: false);

    public void Dispose() => _model.Dispose();

    [Fact]
    public void One_slow_round_out_of_seven_does_not_move_the_median()
    {
        var clock = new ManualTimeProvider();
        using var executor = Clocked(clock, round => round == 3 ? 100 : 10);
        var measured = Meter(clock, rounds: 7, maxRounds: 7, load: 0.5).Measure(executor);

        Assert.Equal(7, measured.Rounds);
        Assert.Equal(TimeSpan.FromMilliseconds(10), measured.StepTime);
        Assert.Equal(Span.Count / 0.010, measured.DecodeTokensPerSecondPerBlock, 6);
        Assert.Equal(0, measured.Spread, 9);
        Assert.False(measured.Busy);
        Assert.Equal("measured", measured.Source);
        Assert.StartsWith("decode 200 tokens/s per block, median of 7 rounds x 4 decode steps, spread 0%", measured.Method, StringComparison.Ordinal);
    }

    [Fact]
    public void A_wide_spread_adds_rounds_until_it_settles()
    {
        var clock = new ManualTimeProvider();
        using var executor = Clocked(clock, round => round < 2 ? 30 : 10);
        var measured = Meter(clock, rounds: 5, maxRounds: 15, load: 0.5).Measure(executor);

        // [10,10,10,30,30] has spread 2; each further fast round narrows p75 until it is 10 at 9 rounds.
        Assert.Equal(9, measured.Rounds);
        Assert.Equal(TimeSpan.FromMilliseconds(10), measured.StepTime);
        Assert.False(measured.Busy);
    }

    [Fact]
    public void A_spread_that_never_settles_stops_at_max_rounds_and_says_busy()
    {
        var clock = new ManualTimeProvider();
        using var executor = Clocked(clock, round => round % 2 == 0 ? 10 : 20);
        var measured = Meter(clock, rounds: 5, maxRounds: 9, load: 0.5).Measure(executor);

        Assert.Equal(9, measured.Rounds);
        Assert.True(measured.Spread > 0.10, $"spread {measured.Spread}");
        Assert.True(measured.Busy);
        Assert.Contains(", busy", measured.Method, StringComparison.Ordinal);
    }

    [Fact]
    public void A_load_above_the_core_count_says_busy()
    {
        var clock = new ManualTimeProvider();
        using var executor = Clocked(clock, _ => 10);
        var measured = Meter(clock, rounds: 3, maxRounds: 3, load: Environment.ProcessorCount + 1).Measure(executor);

        Assert.Equal(3, measured.Rounds);
        Assert.Equal(0, measured.Spread, 9);
        Assert.True(measured.Busy);
    }

    [Fact]
    public void Forward_and_network_are_measured_and_the_announced_figure_is_their_minimum_with_decode()
    {
        var clock = new ManualTimeProvider();
        using var executor = Clocked(clock, _ => 10, forwardMs: 64);
        var decodeBound = Meter(clock, rounds: 3, maxRounds: 3, load: 0.5, bandwidthMbps: 1000).Measure(executor);
        Assert.Equal(128 * Span.Count / 0.064, decodeBound.ForwardTokensPerSecondPerBlock, 6);
        var network = 1000 * 1e6 / 8 / (_model.Config.HiddenSize * 4 * 2.0);
        Assert.Equal(network, decodeBound.NetworkTokensPerSecond!.Value, 6);
        Assert.True(network > decodeBound.DecodeTokensPerSecondPerBlock);
        Assert.Equal(decodeBound.DecodeTokensPerSecondPerBlock, decodeBound.TokensPerSecondPerBlock);

        var networkBound = Meter(clock, rounds: 3, maxRounds: 3, load: 0.5, bandwidthMbps: 0.001).Measure(executor);
        Assert.Equal(networkBound.NetworkTokensPerSecond!.Value, networkBound.TokensPerSecondPerBlock);
        Assert.True(networkBound.TokensPerSecondPerBlock < networkBound.DecodeTokensPerSecondPerBlock);

        var computeOnly = Meter(clock, rounds: 3, maxRounds: 3, load: 0.5, bandwidthMbps: null).Measure(executor);
        Assert.Null(computeOnly.NetworkTokensPerSecond);
        Assert.Equal(computeOnly.DecodeTokensPerSecondPerBlock, computeOnly.TokensPerSecondPerBlock);
        Assert.Contains("network not estimated", computeOnly.Method, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new[] { 1.0, 2, 3, 4, 5 }, 3, 0.666666666)]
    [InlineData(new[] { 5.0, 1, 4, 2 }, 3, 0.833333333)]
    [InlineData(new[] { 7.0 }, 7, 0)]
    public void Median_and_spread(double[] values, double median, double spread)
    {
        Assert.Equal(median, ThroughputMeter.Median(values), 6);
        Assert.Equal(spread, ThroughputMeter.Spread(values), 6);
    }

    [Theory]
    [InlineData("Rounds")]
    [InlineData("MaxRounds")]
    [InlineData("NetworkBandwidthMbps")]
    [InlineData("Given")]
    public void Bad_options_name_the_option(string property)
    {
        var options = property switch
        {
            "Rounds" => new ThroughputMeterOptions { Rounds = 0 },
            "MaxRounds" => new ThroughputMeterOptions { Rounds = 5, MaxRounds = 4 },
            "NetworkBandwidthMbps" => new ThroughputMeterOptions { NetworkBandwidthMbps = 0 },
            _ => new ThroughputMeterOptions { Given = double.NaN },
        };
        Assert.Equal(property, Assert.ThrowsAny<ArgumentException>(() => new ThroughputMeter(options)).ParamName);
    }

    private static ThroughputMeter Meter(ManualTimeProvider clock, int rounds, int maxRounds, double load, double? bandwidthMbps = 100) =>
        new(new ThroughputMeterOptions { Steps = 4, WarmupSteps = 1, Rounds = rounds, MaxRounds = maxRounds, TimeProvider = clock, NetworkBandwidthMbps = bandwidthMbps }, null, () => load);

    private ClockedExecutor Clocked(ManualTimeProvider clock, Func<int, int> roundStepMs, int forwardMs = 1) =>
        new(RandomModelFixture.Factory.Create(_model.Weights, Span), clock, roundStepMs, forwardMs);

    /// <summary>Runs each pass on the real executor, then advances the clock: per round (one cache each) a chosen decode step time.</summary>
    private sealed class ClockedExecutor(IBlockExecutor inner, ManualTimeProvider clock, Func<int, int> roundStepMs, int forwardMs) : DelegatingBlockExecutor(inner)
    {
        private int _caches;

        public override IKvCache CreateCache(int batchSize, int maxLength)
        {
            _caches++;
            return base.CreateCache(batchSize, maxLength);
        }

        public override void Forward(Span<float> hidden, int batchSize, int tokenCount, IKvCache? cache)
        {
            base.Forward(hidden, batchSize, tokenCount, cache);
            if (cache is null)
            {
                clock.Advance(TimeSpan.FromMilliseconds(forwardMs));
            }
            else if (tokenCount == 1)
            {
                // Cache 1 is the prefill's; each round's cache follows, so round r (from 0) runs in cache r + 2.
                clock.Advance(TimeSpan.FromMilliseconds(roundStepMs(_caches - 2)));
            }
        }
    }
}
