using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Petals.Execution;

namespace Petals.Server;

/// <summary>
/// Measures what a server announces as its throughput: the decode speed of its span on its real executor, weights and
/// dtype. An untimed prefill of 8 tokens first (it also warms the multi-token path a client's recovery replays take),
/// then batch 1, one token per step: <see cref="ThroughputMeterOptions.WarmupSteps"/> untimed steps, then
/// <see cref="ThroughputMeterOptions.Steps"/> timed ones on the wall clock.
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

    /// <summary>Creates a meter.</summary>
    /// <param name="options">The step counts; defaults when null.</param>
    /// <param name="logger">Where the measurement is logged; none when null.</param>
    /// <exception cref="ArgumentOutOfRangeException">A step count is out of range.</exception>
    public ThroughputMeter(ThroughputMeterOptions? options = null, ILogger<ThroughputMeter>? logger = null)
    {
        _options = options ?? new ThroughputMeterOptions();
        _options.Validate();
        _logger = logger ?? (ILogger)NullLogger.Instance;
    }

    /// <summary>Measures <paramref name="executor"/>'s whole span.</summary>
    /// <param name="executor">The span's executor.</param>
    /// <returns>The measurement.</returns>
    public ThroughputMeasurement Measure(IBlockExecutor executor)
    {
        ArgumentNullException.ThrowIfNull(executor);
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

        var hidden = new float[hiddenSize];
        using var cache = executor.CreateCache(1, _options.WarmupSteps + _options.Steps);
        long started = 0;
        for (var step = 0; step < _options.WarmupSteps + _options.Steps; step++)
        {
            if (step == _options.WarmupSteps)
            {
                started = Stopwatch.GetTimestamp();
            }

            input.CopyTo(hidden, 0);
            executor.Forward(hidden, 1, 1, cache);
        }

        var seconds = Math.Max(Stopwatch.GetElapsedTime(started).TotalSeconds / _options.Steps, 1e-9);
        var measurement = new ThroughputMeasurement(executor.Blocks, executor.Blocks.Count / seconds, TimeSpan.FromSeconds(seconds), _options.Steps);
        ServerLog.ThroughputMeasured(_logger, executor.Blocks.ToString(), measurement.TokensPerSecondPerBlock, seconds * 1000);
        return measurement;
    }
}
