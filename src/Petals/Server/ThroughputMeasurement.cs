using Petals.Models;

namespace Petals.Server;

/// <summary>What <see cref="ThroughputMeter"/> measured on a span.</summary>
/// <param name="Blocks">The span measured.</param>
/// <param name="TokensPerSecondPerBlock">The announced figure: <c>Blocks.Count / StepTime</c> (what a router divides a block count by).</param>
/// <param name="StepTime">The mean wall-clock time of one timed decode step through the whole span (batch 1, one token).</param>
/// <param name="Steps">How many timed steps the mean is over.</param>
public sealed record ThroughputMeasurement(BlockRange Blocks, double TokensPerSecondPerBlock, TimeSpan StepTime, int Steps);
