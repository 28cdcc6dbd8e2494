using Petals.Discovery;
using Petals.Models;

namespace Petals.Routing;

/// <summary>One hop of a route: the blocks <paramref name="Blocks"/> run on <paramref name="Server"/>.</summary>
/// <param name="Server">The server that runs the blocks.</param>
/// <param name="Blocks">The blocks it runs: a sub-range of <c>Server.Span</c> (not necessarily the whole span).</param>
/// <remarks>A route is a list of segments that tiles the requested blocks in order, with no gap and no overlap.</remarks>
public sealed record RouteSegment(ServerInfo Server, BlockRange Blocks);
