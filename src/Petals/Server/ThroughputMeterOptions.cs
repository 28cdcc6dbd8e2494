namespace Petals.Server;

/// <summary>How <see cref="ThroughputMeter"/> measures a span's throughput, and where the result is cached.</summary>
public sealed class ThroughputMeterOptions
{
    /// <summary>Untimed decode steps before the timed rounds (after an untimed prefill). Default 2.</summary>
    public int WarmupSteps { get; set; } = 2;

    /// <summary>Timed decode steps per round; a round's mean step time is one sample. Default 8.</summary>
    public int Steps { get; set; } = 8;

    /// <summary>Timed rounds; the announced step time is their median. Default 5.</summary>
    public int Rounds { get; set; } = 5;

    /// <summary>
    /// The most rounds in all: while the relative spread of the rounds ((p75 − p25) / median) is above
    /// <see cref="SpreadTolerance"/>, rounds are added up to this bound. Default 15.
    /// </summary>
    public int MaxRounds { get; set; } = 15;

    /// <summary>The relative spread ((p75 − p25) / median of the round times) the measurement accepts. Default 0.10.</summary>
    public double SpreadTolerance { get; set; } = 0.10;

    /// <summary>Tokens of the timed large forward (batch 1, stateless), reported as forward tokens/s per block; 0 skips it. Default 128.</summary>
    public int ForwardTokens { get; set; } = 128;

    /// <summary>
    /// The network bandwidth in Mbit/s that network throughput is estimated from (bytes per token: hidden size × 4, the
    /// wire codec's float32 hidden states, in and out); null: no network estimate (announce compute only). Default 100.
    /// </summary>
    public double? NetworkBandwidthMbps { get; set; } = 100;

    /// <summary>The clock rounds are timed with. Default <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>When set, announce this figure (tokens/s per block) and measure nothing. Default null.</summary>
    public double? Given { get; set; }

    /// <summary>Measure even when the cache holds a result for this key, and rewrite it. Default false.</summary>
    public bool ForceMeasure { get; set; }

    /// <summary>
    /// The throughput cache file; null: <c>$XDG_CACHE_HOME/petals/throughput.json</c> (else <c>~/.cache/petals/throughput.json</c>);
    /// empty: no cache. Default null.
    /// </summary>
    public string? CachePath { get; set; }

    /// <summary>Executor settings that change its speed (e.g. <c>threads=2</c>), made part of the cache key. Default null.</summary>
    public string? ExecutorSettings { get; set; }

    /// <summary>
    /// The weight quantization the executor is configured with (<c>petals serve --quant</c>: <c>"none"</c>, <c>"int8"</c>,
    /// <c>"nf4"</c>, <c>"q8_0"</c>, <c>"q4_k"</c>), made part of the cache key since quantized blocks run at another speed.
    /// Set it with the executor's own setting (e.g. <c>CpuExecutorOptions.Quantization</c>): the cache is read before the
    /// executor loads. Default <c>"none"</c>.
    /// </summary>
    public string Quantization { get; set; } = "none";

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A count is out of range; the parameter name is the option's.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(WarmupSteps, nameof(WarmupSteps));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Steps, nameof(Steps));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Rounds, nameof(Rounds));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRounds, Rounds, nameof(MaxRounds));
        ArgumentOutOfRangeException.ThrowIfNegative(SpreadTolerance, nameof(SpreadTolerance));
        ArgumentOutOfRangeException.ThrowIfNegative(ForwardTokens, nameof(ForwardTokens));
        if (!Discovery.AnnouncementLimits.IsValidQuantization(Quantization, out var fault))
        {
            throw new ArgumentOutOfRangeException(nameof(Quantization), Quantization, $"Quantization is invalid: {fault}");
        }

        if (NetworkBandwidthMbps is { } bw && !(bw > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(NetworkBandwidthMbps), bw, "The bandwidth must be positive.");
        }

        if (Given is { } given && !(given > 0 && double.IsFinite(given)))
        {
            throw new ArgumentOutOfRangeException(nameof(Given), given, "A given throughput must be positive and finite.");
        }

        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
    }
}
