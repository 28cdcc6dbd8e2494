using Petals.Discovery;
using Petals.Models;
using Petals.Routing;
using Petals.Transport;

namespace Petals.Tests.Client.Routing;

/// <summary>Builds servers for routing tests and checks routes against an independent statement of the cost model.</summary>
internal static class RoutingSwarm
{
    public static ServerInfo Peer(string id, int start, int end, double throughput = 10, long cacheLeft = long.MaxValue, ServerState state = ServerState.Online, IReadOnlyDictionary<string, TimeSpan>? next = null) => new()
    {
        PeerId = id,
        Address = PeerAddress.Parse($"mem://{id}"),
        State = state,
        Span = new BlockRange(start, end),
        Throughput = throughput,
        CacheTokensLeft = cacheLeft,
        NextServerRtts = next ?? new Dictionary<string, TimeSpan>(),
    };

    /// <summary>The blocks of <paramref name="range"/> that no usable server covers (bans ignored).</summary>
    public static List<BlockRange> Gaps(ServerInfo[] usable, BlockRange range)
    {
        var gaps = new List<BlockRange>();
        int? start = null;
        for (var b = range.Start; b <= range.End; b++)
        {
            var covered = b < range.End && usable.Any(s => s.Span.Contains(b));
            if (!covered && b < range.End && start is null)
            {
                start = b;
            }
            else if ((covered || b == range.End) && start is not null)
            {
                gaps.Add(new BlockRange(start.Value, b));
                start = null;
            }
        }

        return gaps;
    }

    /// <summary>Whether <paramref name="server"/> may run <paramref name="block"/>: an unbanned server having it, or a banned one when no unbanned server has it.</summary>
    public static bool MayRun(ServerInfo server, int block, ServerInfo[] usable, IReadOnlySet<string> banned) =>
        server.Span.Contains(block) && (!banned.Contains(server.PeerId) || !usable.Any(s => !banned.Contains(s.PeerId) && s.Span.Contains(block)));

    /// <summary>
    /// The cost model written out segment by segment: entering a server costs half the client's RTT to it (unknown:
    /// <paramref name="unknownRtt"/>) plus the hop overhead, plus the penalty when its free cache is below the need;
    /// each block costs 1/throughput; going from one segment to the next costs the RTT the first server announces to
    /// the second (unknown: <paramref name="unknownRtt"/>).
    /// </summary>
    public static double Cost(IReadOnlyList<RouteSegment> route, RouteRequest request, double hop, double penalty, double unknownRtt, double defaultThroughput)
    {
        var total = 0.0;
        for (var i = 0; i < route.Count; i++)
        {
            var server = route[i].Server;
            total += (request.ClientRtts.TryGetValue(server.PeerId, out var rtt) ? rtt.TotalSeconds : unknownRtt) / 2;
            total += hop;
            total += server.CacheTokensLeft < request.CacheTokensNeeded ? penalty : 0;
            total += route[i].Blocks.Count / (server.Throughput > 0 ? server.Throughput : defaultThroughput);
            if (i + 1 < route.Count)
            {
                total += server.NextServerRtts.TryGetValue(route[i + 1].Server.PeerId, out var ping) ? ping.TotalSeconds : unknownRtt;
            }
        }

        return total;
    }

    /// <summary>
    /// Whether <paramref name="route"/> is a valid route for <paramref name="request"/>: segments in order tiling the
    /// range, each within its server's span, consecutive servers different, only usable servers, banned ones only on
    /// blocks nobody else has.
    /// </summary>
    public static string? Problem(IReadOnlyList<RouteSegment> route, RouteRequest request, ServerInfo[] usable)
    {
        var at = request.Blocks.Start;
        for (var i = 0; i < route.Count; i++)
        {
            var segment = route[i];
            if (segment.Blocks.Start != at)
            {
                return $"segment {i} starts at {segment.Blocks.Start}, expected {at}";
            }

            if (!usable.Contains(segment.Server))
            {
                return $"segment {i} uses {segment.Server.PeerId}, which is not usable";
            }

            if (i > 0 && route[i - 1].Server.PeerId == segment.Server.PeerId)
            {
                return $"segments {i - 1} and {i} are on the same server";
            }

            for (var b = segment.Blocks.Start; b < segment.Blocks.End; b++)
            {
                if (!MayRun(segment.Server, b, usable, request.BannedPeers))
                {
                    return $"segment {i} runs block {b} on {segment.Server.PeerId}, which may not run it";
                }
            }

            at = segment.Blocks.End;
        }

        return at == request.Blocks.End ? null : $"the route ends at {at}, expected {request.Blocks.End}";
    }
}
