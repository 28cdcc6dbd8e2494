using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Petals.Execution;

namespace Petals.Server;

/// <summary>
/// Measures what a server announces as its throughput, on its real executor, weights and dtype. An untimed prefill of
/// 8 tokens first, then <see cref="ThroughputMeterOptions.WarmupSteps"/> untimed decode steps, then
/// <see cref="ThroughputMeterOptions.Rounds"/> rounds of <see cref="ThroughputMeterOptions.Steps"/> timed steps (batch 1,
/// one token): the step time is the median of the rounds' mean step times, so one disturbed round does not move it. While
/// the rounds' relative spread ((p75 − p25) / median) is above <see cref="ThroughputMeterOptions.SpreadTolerance"/>,
/// rounds are added up to <see cref="ThroughputMeterOptions.MaxRounds"/>. Then one timed stateless forward of
/// <see cref="ThroughputMeterOptions.ForwardTokens"/> tokens. The announced figure is the smaller of decode compute and
/// the network estimate (bandwidth / wire bytes per token), as Petals does.
/// </summary>
/// <remarks>
/// Run it before the server serves (it competes with requests otherwise). Thread-safe: each call uses its own cache and
/// buffers; the executor's own thread-safety applies.
/// </remarks>
public sealed class ThroughputMeter
{
    private const int PrefillTokens = 8;
    private readonly ThroughputMeterOptions _options;
    private readonly ILogger _logger;
    private readonly Func<double?> _loadAverage;

    /// <summary>Creates a meter.</summary>
    /// <param name="options">The step counts; defaults when null.</param>
    /// <param name="logger">Where the measurement is logged; none when null.</param>
    /// <exception cref="ArgumentOutOfRangeException">A step count is out of range.</exception>
    public ThroughputMeter(ThroughputMeterOptions? options = null, ILogger<ThroughputMeter>? logger = null)
        : this(options, logger, ReadLoadAverage)
    {
    }

    internal ThroughputMeter(ThroughputMeterOptions? options, ILogger? logger, Func<double?> loadAverage)
    {
        _options = options ?? new ThroughputMeterOptions();
        _options.Validate();
        _logger = logger ?? NullLogger.Instance;
        _loadAverage = loadAverage;
    }

    /// <summary>Measures <paramref name="executor"/>'s whole span.</summary>
    /// <param name="executor">The span's executor.</param>
    /// <returns>The measurement.</returns>
    public ThroughputMeasurement Measure(IBlockExecutor executor)
    {
        ArgumentNullException.ThrowIfNull(executor);
        var clock = _options.TimeProvider;
        var hiddenSize = executor.Config.HiddenSize;
        var input = new float[hiddenSize];
        var random = new Random(20240601);
        for (var i = 0; i < input.Length; i++)
        {
            input[i] = (random.NextSingle() - 0.5f) * 2f;
        }

        var prefill = new float[PrefillTokens * hiddenSize];
        for (var t = 0; t < PrefillTokens; t++)
        {
            input.CopyTo(prefill, t * hiddenSize);
        }

        using (var prefillCache = executor.CreateCache(1, PrefillTokens))
        {
            executor.Forward(prefill, 1, PrefillTokens, prefillCache);
        }

        var loadBefore = _loadAverage();
        var hidden = new float[hiddenSize];
        var rounds = new List<double>(_options.MaxRounds);
        var steps = _options.Steps;
        var spread = 0.0;
        while (true)
        {
            // A fresh cache per round keeps every round at the same context length.
            using (var cache = executor.CreateCache(1, _options.WarmupSteps + steps))
            {
                for (var step = 0; step < _options.WarmupSteps; step++)
                {
                    input.CopyTo(hidden, 0);
                    executor.Forward(hidden, 1, 1, cache);
                }

                var started = clock.GetTimestamp();
                for (var step = 0; step < steps; step++)
                {
                    input.CopyTo(hidden, 0);
                    executor.Forward(hidden, 1, 1, cache);
                }

                rounds.Add(Math.Max(clock.GetElapsedTime(started).TotalSeconds / steps, 1e-9));
            }

            if (rounds.Count < _options.Rounds)
            {
                continue;
            }

            spread = Spread(rounds);
            if (spread <= _options.SpreadTolerance || rounds.Count >= _options.MaxRounds)
            {
                break;
            }
        }

        var stepSeconds = Median(rounds);
        var loadAfter = _loadAverage();
        var cores = Environment.ProcessorCount;
        var load = Math.Max(loadBefore ?? 0, loadAfter ?? 0);
        var busy = spread > _options.SpreadTolerance || load > cores;

        var forward = 0.0;
        if (_options.ForwardTokens > 0)
        {
            var tokens = _options.ForwardTokens;
            var batch = new float[tokens * hiddenSize];
            for (var t = 0; t < tokens; t++)
            {
                input.CopyTo(batch, t * hiddenSize);
            }

            var started = clock.GetTimestamp();
            executor.Forward(batch, 1, tokens, null);
            forward = tokens * executor.Blocks.Count / Math.Max(clock.GetElapsedTime(started).TotalSeconds, 1e-9);
        }

        var decode = executor.Blocks.Count / stepSeconds;
        double? network = _options.NetworkBandwidthMbps is { } mbps ? NetworkTokensPerSecond(mbps, hiddenSize) : null;
        var announced = network is { } n ? Math.Min(decode, n) : decode;
        var method = string.Create(CultureInfo.InvariantCulture,
            $"decode {decode:F0} tokens/s per block, median of {rounds.Count} rounds x {steps} decode steps, spread {spread * 100:F0}% (tolerance {_options.SpreadTolerance * 100:F0}%), load {(loadBefore is null && loadAfter is null ? "?" : load.ToString("F1", CultureInfo.InvariantCulture))}/{cores} cores{(busy ? ", busy" : "")}; forward {forward:F0} tokens/s per block at 1x{_options.ForwardTokens}; network {(network is { } nn ? nn.ToString("F0", CultureInfo.InvariantCulture) + $" tokens/s at {_options.NetworkBandwidthMbps} Mbit/s" : "not estimated")}");
        var measurement = new ThroughputMeasurement(executor.Blocks, announced, TimeSpan.FromSeconds(stepSeconds), steps)
        {
            DecodeTokensPerSecondPerBlock = decode,
            ForwardTokensPerSecondPerBlock = forward,
            NetworkTokensPerSecond = network,
            Rounds = rounds.Count,
            Spread = spread,
            Busy = busy,
            Source = "measured",
            Method = method,
        };
        ServerLog.ThroughputMeasured(_logger, executor.Blocks.ToString(), measurement.TokensPerSecondPerBlock, stepSeconds * 1000, method);
        if (busy)
        {
            ServerLog.ThroughputMachineBusy(_logger, rounds.Count, spread * 100, load, cores);
        }

        return measurement;
    }

    /// <summary>Tokens/s the link carries: a token's hidden state in float32 (the wire codec's default), each way.</summary>
    internal static double NetworkTokensPerSecond(double mbps, int hiddenSize) => mbps * 1e6 / 8 / (hiddenSize * sizeof(float) * 2.0);

    internal static double Median(IReadOnlyList<double> values) => Percentile(values, 0.5);

    internal static double Spread(IReadOnlyList<double> values)
    {
        var median = Median(values);
        return median > 0 ? (Percentile(values, 0.75) - Percentile(values, 0.25)) / median : 0;
    }

    internal static double Percentile(IReadOnlyList<double> values, double p)
    {
        var sorted = values.ToArray();
        Array.Sort(sorted);
        var position = p * (sorted.Length - 1);
        var lower = (int)Math.Floor(position);
        var upper = Math.Min(lower + 1, sorted.Length - 1);
        return sorted[lower] + ((sorted[upper] - sorted[lower]) * (position - lower));
    }

    private static double? ReadLoadAverage()
    {
        try
        {
            var text = File.ReadAllText("/proc/loadavg");
            var first = text.Split(' ', 2)[0];
            return double.TryParse(first, NumberStyles.Float, CultureInfo.InvariantCulture, out var load) ? load : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
