using System.Globalization;
using System.Text;
using Petals.Discovery;
using Petals.Models;
using Petals.Routing;

namespace Petals.Client.Routing;

/// <summary>
/// The core router. Inference: the minimum-latency route, a shortest path (Dijkstra) over (server, block) nodes where
/// entering a server costs half the client's round-trip time to it plus <see cref="RouterOptions.HopOverhead"/> (plus
/// <see cref="RouterOptions.CacheMissPenalty"/> when its free cache cannot hold the session), each block costs the
/// server's per-token compute time <c>1 / Throughput</c>, and switching from one server to the next costs the round-trip
/// time the first announces to the second. Forward and backward: a walk over the blocks that picks, at each block still
/// to cover, one of the servers having it at random with probability proportional to its throughput, and runs as many
/// blocks there as it can.
/// </summary>
/// <remarks>
/// A server is usable when it is online, announces the <see cref="RouteRequest.RequiredQuantization"/> (when one is
/// required), is allowed by <see cref="RouterOptions.AllowedPeers"/> and not in <see cref="RouterOptions.BlockedPeers"/>. A banned server (<see cref="RouteRequest.BannedPeers"/>) is used only for
/// blocks that no unbanned usable server covers. Ties between routes of equal cost go to fewer segments; remaining ties
/// are broken by the ordinal order of peer ids (the queue orders equal nodes by server), so the route depends on the
/// request's content only, never on the order its servers are listed in. Thread-safe.
/// </remarks>
public sealed class MinLatencyRouter : IRouter
{
    private readonly HashSet<string> _allowed;
    private readonly HashSet<string> _blocked;
    private readonly double _hop;
    private readonly double _penalty;
    private readonly double _unknownRtt;
    private readonly double _defaultThroughput;
    private readonly Random _random;
    private readonly Lock _randomLock = new();

    /// <summary>Creates the router.</summary>
    /// <param name="options">The options; validated and copied (later changes have no effect).</param>
    /// <param name="random">The randomness of forward routes; a shared unseeded one when null.</param>
    public MinLatencyRouter(RouterOptions options, Random? random = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _allowed = new HashSet<string>(options.AllowedPeers, StringComparer.Ordinal);
        _blocked = new HashSet<string>(options.BlockedPeers, StringComparer.Ordinal);
        _hop = options.HopOverhead.TotalSeconds;
        _penalty = options.CacheMissPenalty.TotalSeconds;
        _unknownRtt = options.UnknownRtt.TotalSeconds;
        _defaultThroughput = options.DefaultThroughput;
        _random = random ?? Random.Shared;
    }

    /// <inheritdoc />
    /// <exception cref="RemoteChainException">When some block of the request has no usable server; the message names those blocks.</exception>
    public IReadOnlyList<RouteSegment> RouteInference(RouteRequest request)
    {
        var graph = Prepare(request);
        var servers = graph.Servers;
        var first = request.Blocks.Start;
        var width = request.Blocks.Count + 1;

        // Node ids: (server s, boundary b, phase) -> ((s * width) + (b - first)) * 2 + phase. Phase 0 ("in"): the
        // route has just entered s at b and must run at least one block there; phase 1 ("out"): s has run the blocks
        // up to b, so the route may go on on s or switch to another server. Without the two phases a route could enter
        // and leave a server at the same boundary, an empty segment used as a relay.
        var count = servers.Length * width * 2;
        var cost = new double[count];
        var hops = new int[count];
        var previous = new int[count];
        Array.Fill(cost, double.PositiveInfinity);
        Array.Fill(previous, -1);
        var queue = new PriorityQueue<int, (double Cost, int Hops, int Node)>();
        var enter = new double[servers.Length];
        var compute = new double[servers.Length];
        for (var s = 0; s < servers.Length; s++)
        {
            var info = servers[s];
            var rtt = request.ClientRtts.TryGetValue(info.PeerId, out var measured) && measured >= TimeSpan.Zero ? measured.TotalSeconds : _unknownRtt;
            enter[s] = (rtt / 2) + _hop + (info.CacheTokensLeft < request.CacheTokensNeeded ? _penalty : 0);
            compute[s] = 1 / Throughput(info);
            if (graph.Usable(s, first))
            {
                Relax(Node(s, first, 0), enter[s], 1, -1);
            }
        }

        var target = -1;
        while (queue.TryDequeue(out var node, out var key))
        {
            if (key.Cost != cost[node] || key.Hops != hops[node])
            {
                continue; // a stale entry: the node was reached more cheaply since
            }

            var phase = node & 1;
            var s = (node >> 1) / width;
            var b = ((node >> 1) % width) + first;
            if (phase == 1 && b == request.Blocks.End)
            {
                target = node;
                break;
            }

            if (b < request.Blocks.End && graph.Usable(s, b))
            {
                Relax(Node(s, b + 1, 1), key.Cost + compute[s], key.Hops, node);
            }

            if (phase == 1 && b < request.Blocks.End)
            {
                var from = servers[s];
                for (var t = 0; t < servers.Length; t++)
                {
                    if (t != s && graph.Usable(t, b))
                    {
                        var ping = from.NextServerRtts.TryGetValue(servers[t].PeerId, out var announced) && announced >= TimeSpan.Zero ? announced.TotalSeconds : _unknownRtt;
                        Relax(Node(t, b, 0), key.Cost + ping + enter[t], key.Hops + 1, node);
                    }
                }
            }
        }

        if (target < 0)
        {
            // Prepare checked that every block has a usable server, and then a route always exists.
            throw new InvalidOperationException("No route was found although every block has a usable server.");
        }

        var route = new List<RouteSegment>();
        var end = request.Blocks.End;
        for (var at = target; at >= 0; at = previous[at])
        {
            if ((at & 1) == 0)
            {
                var b = ((at >> 1) % width) + first;
                route.Add(new RouteSegment(servers[(at >> 1) / width], new BlockRange(b, end)));
                end = b;
            }
        }

        route.Reverse();
        return route;

        int Node(int s, int b, int phase) => ((((s * width) + (b - first)) << 1) | phase);

        void Relax(int node, double newCost, int newHops, int from)
        {
            if (newCost < cost[node] || (newCost == cost[node] && newHops < hops[node]))
            {
                cost[node] = newCost;
                hops[node] = newHops;
                previous[node] = from;
                queue.Enqueue(node, (newCost, newHops, node));
            }
        }
    }

    /// <inheritdoc />
    /// <exception cref="RemoteChainException">When some block of the request has no usable server; the message names those blocks.</exception>
    public IReadOnlyList<RouteSegment> RouteForward(RouteRequest request)
    {
        var graph = Prepare(request);
        var servers = graph.Servers;
        var route = new List<RouteSegment>();
        var weights = new double[servers.Length];
        var at = request.Blocks.Start;
        while (at < request.Blocks.End)
        {
            var total = 0.0;
            for (var s = 0; s < servers.Length; s++)
            {
                weights[s] = graph.Usable(s, at) ? Throughput(servers[s]) : 0;
                total += weights[s];
            }

            double draw;
            lock (_randomLock)
            {
                draw = _random.NextDouble() * total;
            }

            var chosen = -1;
            for (var s = 0; s < servers.Length; s++)
            {
                if (weights[s] > 0)
                {
                    chosen = s;
                    draw -= weights[s];
                    if (draw < 0)
                    {
                        break;
                    }
                }
            }

            var end = at + 1;
            while (end < request.Blocks.End && graph.Usable(chosen, end))
            {
                end++;
            }

            route.Add(new RouteSegment(servers[chosen], new BlockRange(at, end)));
            at = end;
        }

        return route;
    }

    private double Throughput(ServerInfo info) => info.Throughput > 0 && double.IsFinite(info.Throughput) ? info.Throughput : _defaultThroughput;

    private Graph Prepare(RouteRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(request.Servers, "request.Servers");
        ArgumentNullException.ThrowIfNull(request.ClientRtts, "request.ClientRtts");
        ArgumentNullException.ThrowIfNull(request.BannedPeers, "request.BannedPeers");
        ArgumentOutOfRangeException.ThrowIfNegative(request.CacheTokensNeeded, "request.CacheTokensNeeded");
        var range = request.Blocks;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var candidates = new List<ServerInfo>();
        var left = new List<string>();
        var otherQuantization = new List<ServerInfo>();
        foreach (var info in request.Servers)
        {
            if (info is null)
            {
                throw new ArgumentException("request.Servers contains a null entry.", nameof(request));
            }

            if (!seen.Add(info.PeerId))
            {
                throw new ArgumentException($"request.Servers lists peer {info.PeerId} more than once.", nameof(request));
            }

            if (info.State != ServerState.Online || info.Span.End <= range.Start || info.Span.Start >= range.End)
            {
                continue;
            }

            if (request.RequiredQuantization is { } required && !string.Equals(info.Quantization, required, StringComparison.Ordinal))
            {
                otherQuantization.Add(info);
            }
            else if (request.RequiredAdapter is { } adapter && !info.Adapters.Contains(adapter, StringComparer.Ordinal))
            {
                left.Add($"{PeerIds.Short(info.PeerId)} (no adapter '{adapter}')");
            }
            else if (_blocked.Contains(info.PeerId))
            {
                left.Add($"{PeerIds.Short(info.PeerId)} (blocked)");
            }
            else if (_allowed.Count > 0 && !_allowed.Contains(info.PeerId))
            {
                left.Add($"{PeerIds.Short(info.PeerId)} (not allowed)");
            }
            else
            {
                candidates.Add(info);
            }
        }

        candidates.Sort((a, b) => string.CompareOrdinal(a.PeerId, b.PeerId));
        var servers = candidates.ToArray();
        var banned = new bool[servers.Length];
        for (var s = 0; s < servers.Length; s++)
        {
            banned[s] = request.BannedPeers.Contains(servers[s].PeerId);
        }

        var unbannedCover = new bool[range.Count];
        var anyCover = new bool[range.Count];
        for (var s = 0; s < servers.Length; s++)
        {
            var from = Math.Max(servers[s].Span.Start, range.Start);
            var to = Math.Min(servers[s].Span.End, range.End);
            for (var b = from; b < to; b++)
            {
                anyCover[b - range.Start] = true;
                unbannedCover[b - range.Start] |= !banned[s];
            }
        }

        var gaps = Gaps(anyCover, range.Start);
        if (gaps.Count > 0)
        {
            throw new RemoteChainException(DescribeGaps(request, gaps, servers, left, otherQuantization));
        }

        return new Graph(servers, banned, unbannedCover, range.Start);
    }

    /// <summary>The runs of blocks not covered, as ranges: block <c>offset + i</c> is covered when <c>covered[i]</c>.</summary>
    internal static List<BlockRange> Gaps(bool[] covered, int offset)
    {
        var gaps = new List<BlockRange>();
        for (var i = 0; i < covered.Length;)
        {
            if (covered[i])
            {
                i++;
                continue;
            }

            var start = i;
            while (i < covered.Length && !covered[i])
            {
                i++;
            }

            gaps.Add(new BlockRange(start + offset, i + offset));
        }

        return gaps;
    }

    private static string DescribeGaps(RouteRequest request, List<BlockRange> gaps, ServerInfo[] usable, List<string> left, List<ServerInfo> otherQuantization)
    {
        var message = new StringBuilder(request.RequiredAdapter is { } adapter ? $"no online server holding adapter '{adapter}' covers blocks " : "no online server covers blocks ").AppendJoin(", ", gaps);
        if (!string.IsNullOrEmpty(request.ModelId))
        {
            message.Append(" of model ").Append(request.ModelId);
        }

        message.Append(" (routing blocks ").Append(request.Blocks.ToString()).Append("; online spans: ");
        if (usable.Length == 0)
        {
            message.Append("none");
        }
        else
        {
            var spans = usable.OrderBy(s => s.Span.Start).ThenBy(s => s.Span.End).ThenBy(s => s.PeerId, StringComparer.Ordinal)
                .Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Span} by {PeerIds.Short(s.PeerId)}"));
            message.AppendJoin(", ", spans);
        }

        if (left.Count > 0)
        {
            left.Sort(StringComparer.Ordinal);
            message.Append("; left out by the peer lists: ").AppendJoin(", ", left);
        }

        if (request.RequiredQuantization is { } required)
        {
            // What the swarm offers for these blocks, by quantization: the requirement and the alternatives side by side.
            message.Append("; required weight quantization '").Append(required).Append("': the swarm offers ");
            var offers = usable.Concat(otherQuantization)
                .GroupBy(s => s.Quantization ?? "(not stated)", StringComparer.Ordinal)
                .OrderBy(g => g.Key, StringComparer.Ordinal)
                .Select(g => $"'{g.Key}' ({string.Join(", ", g.OrderBy(s => s.Span.Start).ThenBy(s => s.PeerId, StringComparer.Ordinal).Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Span} by {PeerIds.Short(s.PeerId)}")))})")
                .ToArray();
            message.Append(offers.Length == 0 ? "nothing online" : string.Join(", ", offers));
        }

        return message.Append(')').ToString();
    }

    /// <summary>The usable servers of one request and which blocks each may run.</summary>
    private sealed class Graph(ServerInfo[] servers, bool[] banned, bool[] unbannedCover, int first)
    {
        public ServerInfo[] Servers { get; } = servers;

        /// <summary>Whether server <paramref name="s"/> may run block <paramref name="block"/>: it has the block and is not banned, or no unbanned server has it.</summary>
        public bool Usable(int s, int block) => Servers[s].Span.Contains(block) && (!banned[s] || !unbannedCover[block - first]);
    }
}
