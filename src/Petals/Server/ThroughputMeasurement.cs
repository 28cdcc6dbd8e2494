using Petals.Models;

namespace Petals.Server;

/// <summary>What <see cref="ThroughputMeter"/> measured on a span (or a given or cached figure).</summary>
/// <param name="Blocks">The span measured.</param>
/// <param name="TokensPerSecondPerBlock">The announced figure: the smaller of <see cref="DecodeTokensPerSecondPerBlock"/> and <see cref="NetworkTokensPerSecond"/> (what a router divides a block count by).</param>
/// <param name="StepTime">The median over rounds of the mean wall-clock time of one decode step through the whole span (batch 1, one token).</param>
/// <param name="Steps">Timed decode steps per round.</param>
public sealed record ThroughputMeasurement(BlockRange Blocks, double TokensPerSecondPerBlock, TimeSpan StepTime, int Steps)
{
    /// <summary>Compute throughput of one-token inference steps: <c>Blocks.Count / StepTime</c>.</summary>
    public double DecodeTokensPerSecondPerBlock { get; init; } = TokensPerSecondPerBlock;

    /// <summary>Compute throughput of one large stateless forward (tokens × blocks / time); 0 when not measured.</summary>
    public double ForwardTokensPerSecondPerBlock { get; init; }

    /// <summary>Network throughput in tokens/s estimated from the bandwidth and the wire bytes per token; null when no bandwidth was given.</summary>
    public double? NetworkTokensPerSecond { get; init; }

    /// <summary>Timed rounds the median is over.</summary>
    public int Rounds { get; init; } = 1;

    /// <summary>Relative spread of the rounds: (p75 − p25) / median of the round step times.</summary>
    public double Spread { get; init; }

    /// <summary>Whether the machine looked busy (1-minute load above the core count, or spread above the tolerance after every round allowed).</summary>
    public bool Busy { get; init; }

    /// <summary>Where the figure comes from: <c>measured</c>, <c>cached</c> or <c>given</c>.</summary>
    public string Source { get; init; } = "measured";

    /// <summary>How it was measured, in a short line (for logs, the CLI and statistics).</summary>
    public string Method { get; init; } = "";

    /// <summary>
    /// What the announcement says about the figure (<c>ServerInfo.ThroughputMethod</c>, at most 128 bytes): the source,
    /// rounds, spread, busy flag and the decode, forward and network figures, e.g.
    /// <c>measured: median of 5x8 steps, spread 3%, busy; decode 43045, forward 9113, network 24414 tokens/s</c>.
    /// </summary>
    public string AnnouncedMethod
    {
        get
        {
            if (Source == "given")
            {
                return "given";
            }

            var head = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{Source}: median of {Rounds}x{Steps} steps, spread {Spread * 100:F0}%{(Busy ? ", busy" : "")}");
            var full = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{head}; decode {DecodeTokensPerSecondPerBlock:F0}, forward {ForwardTokensPerSecondPerBlock:F0}, network {(NetworkTokensPerSecond is { } n ? n.ToString("F0", System.Globalization.CultureInfo.InvariantCulture) : "none")} tokens/s");
            return full.Length <= 128 ? full : head.Length <= 128 ? head : Source; // ASCII only, so length is bytes
        }
    }
}
