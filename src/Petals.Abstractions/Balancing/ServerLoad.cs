using Petals.Models;

namespace Petals.Balancing;

/// <summary>One server as balancing sees it: the span it holds and its announced throughput.</summary>
/// <param name="PeerId">The server's peer id.</param>
/// <param name="Span">The blocks it holds (or is loading).</param>
/// <param name="Throughput">Its announced throughput, tokens/s per block (the minimum of compute and network).</param>
public readonly record struct ServerLoad(string PeerId, BlockRange Span, double Throughput);
