namespace Petals.Server;

/// <summary>How <see cref="ThroughputMeter"/> measures a span's decode throughput.</summary>
public sealed class ThroughputMeterOptions
{
    /// <summary>Untimed decode steps before the timed ones (after an untimed prefill). Default 2.</summary>
    public int WarmupSteps { get; set; } = 2;

    /// <summary>Timed decode steps; their mean is the step time. Default 8.</summary>
    public int Steps { get; set; } = 8;

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A count is out of range; the parameter name is the option's.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(WarmupSteps, nameof(WarmupSteps));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Steps, nameof(Steps));
    }
}
