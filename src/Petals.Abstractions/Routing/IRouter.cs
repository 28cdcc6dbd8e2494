namespace Petals.Routing;

/// <summary>
/// Chooses which servers run which blocks: a route of <see cref="RouteSegment"/>s that tiles
/// <see cref="RouteRequest.Blocks"/> in order. Implementations are pure (they only read the request and their
/// options) and thread-safe.
/// </summary>
/// <remarks>
/// When no route exists (some block of the request has no usable server) an implementation throws an exception whose
/// message names exactly the uncovered blocks; the core's router throws <c>Petals.Client.RemoteChainException</c>.
/// </remarks>
public interface IRouter
{
    /// <summary>
    /// The route for an inference session: the one with the least expected latency per generated token.
    /// </summary>
    /// <param name="request">The servers, blocks and session needs.</param>
    /// <returns>The segments in block order; consecutive segments are on different servers.</returns>
    /// <exception cref="ArgumentException">When the request is malformed (e.g. a peer id appears twice or a cache need is negative).</exception>
    IReadOnlyList<RouteSegment> RouteInference(RouteRequest request);

    /// <summary>
    /// A route for one forward or backward batch: spreads batches over servers in proportion to their throughput, so
    /// two calls with the same request may give different routes.
    /// </summary>
    /// <param name="request">The servers and blocks (<see cref="RouteRequest.CacheTokensNeeded"/> is not used).</param>
    /// <returns>The segments in block order; consecutive segments are on different servers.</returns>
    /// <exception cref="ArgumentException">When the request is malformed (e.g. a peer id appears twice).</exception>
    IReadOnlyList<RouteSegment> RouteForward(RouteRequest request);
}
