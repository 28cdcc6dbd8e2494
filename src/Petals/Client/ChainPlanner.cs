using System.Globalization;
using System.Text;
using Petals.Discovery;
using Petals.Models;

namespace Petals.Client;

/// <summary>
/// The pure part of the sequence manager: reduces block announcements to one entry per usable server, and chooses the
/// cheapest chain of whole spans that tiles every block.
/// </summary>
internal static class ChainPlanner
{
    /// <summary>What one read of the announcements gives: the online servers and why others were left out.</summary>
    /// <param name="Online">One entry per online server (its expiry the earliest of its records), ordered by span then peer id.</param>
    /// <param name="Ignored">A sentence per server whose announcements were contradictory or out of range.</param>
    public sealed record View(IReadOnlyList<ServerInfo> Online, IReadOnlyList<string> Ignored);

    /// <summary>
    /// Groups the announcements by peer id, keeping only each peer's latest announcement (the records with its latest
    /// expiration; older ones are leftovers of an earlier announcement). A server is kept when every record of its latest
    /// announcement says online, names the same span and address, is stored under a block of that span, and the span ends
    /// within <paramref name="blockCount"/>.
    /// </summary>
    public static View Collect(IReadOnlyList<BlockServers> blocks, int blockCount, DateTimeOffset now)
    {
        // One announcement gives all its records the same expiration, later than any earlier announcement's: a record
        // of a peer with an earlier expiration than its latest is a leftover of an earlier announcement (e.g. before a
        // restart with another span) under a block the latest one does not cover, and is ignored.
        var latest = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        foreach (var block in blocks)
        {
            foreach (var info in block.Servers)
            {
                if (!IsExpired(info, now) && (!latest.TryGetValue(info.PeerId, out var seen) || info.ExpiresAt > seen))
                {
                    latest[info.PeerId] = info.ExpiresAt;
                }
            }
        }

        var peers = new Dictionary<string, Entry>(StringComparer.Ordinal);
        foreach (var block in blocks)
        {
            foreach (var info in block.Servers)
            {
                if (IsExpired(info, now) || info.ExpiresAt < latest[info.PeerId])
                {
                    continue;
                }

                if (!peers.TryGetValue(info.PeerId, out var entry))
                {
                    entry = new Entry(info);
                    peers.Add(info.PeerId, entry);
                }
                else
                {
                    if (entry.Problem is null && (info.Span != entry.Info.Span || info.Address != entry.Info.Address))
                    {
                        entry.Problem = string.Create(CultureInfo.InvariantCulture, $"its records disagree (span {entry.Info.Span} at {entry.Info.Address}, and span {info.Span} at {info.Address} under block {block.Block})");
                    }

                    if (info.ExpiresAt < entry.ExpiresAt)
                    {
                        entry.ExpiresAt = info.ExpiresAt;
                    }
                }

                if (entry.Problem is null && !info.Span.Contains(block.Block))
                {
                    entry.Problem = string.Create(CultureInfo.InvariantCulture, $"it announces span {info.Span} under block {block.Block}, outside that span");
                }

                entry.AllOnline &= info.State == ServerState.Online;
            }
        }

        var online = new List<ServerInfo>();
        var ignored = new List<string>();
        foreach (var (peerId, entry) in peers)
        {
            var problem = entry.Problem;
            if (problem is null && entry.Info.Span.End > blockCount)
            {
                problem = string.Create(CultureInfo.InvariantCulture, $"its span {entry.Info.Span} goes past the model's {blockCount} blocks");
            }

            if (problem is not null)
            {
                ignored.Add($"server {Short(peerId)} is ignored: {problem}");
            }
            else if (entry.AllOnline)
            {
                online.Add(entry.Info with { ExpiresAt = entry.ExpiresAt });
            }
        }

        online.Sort(CompareBySpan);
        ignored.Sort(StringComparer.Ordinal);
        return new View(online, ignored);
    }

    /// <summary>Whether <paramref name="info"/> has expired at <paramref name="now"/> (an unset expiry never does).</summary>
    public static bool IsExpired(ServerInfo info, DateTimeOffset now) => info.ExpiresAt != default && info.ExpiresAt <= now;

    /// <summary>
    /// The cheapest chain of servers whose whole spans tile <c>0..blockCount</c>: a shortest path over block boundaries
    /// where a server costs <c>Span.Count / Throughput</c> s plus <see cref="SwarmSequenceOptions.HopCost"/>, plus the
    /// RTT it announces to the next server of the chain (<see cref="SwarmSequenceOptions.UnknownRtt"/> when it announces
    /// none). Ties go to fewer servers, then to the ordinally smaller peer id. Null when no chain exists.
    /// </summary>
    /// <param name="servers">Candidate servers (at most one per peer id).</param>
    /// <param name="blockCount">The model's number of blocks.</param>
    /// <param name="options">The costs.</param>
    /// <param name="exclude">Peer ids not to use, or null.</param>
    public static ServerInfo[]? Plan(IReadOnlyList<ServerInfo> servers, int blockCount, SwarmSequenceOptions options, IReadOnlySet<string>? exclude)
    {
        var candidates = servers.Where(s => s.Span.End <= blockCount && (exclude is null || !exclude.Contains(s.PeerId))).ToArray();
        Array.Sort(candidates, CompareBySpan);
        var byStart = new Dictionary<int, List<int>>();
        for (var i = 0; i < candidates.Length; i++)
        {
            var start = candidates[i].Span.Start;
            if (!byStart.TryGetValue(start, out var list))
            {
                byStart[start] = list = [];
            }

            list.Add(i);
        }

        // best[i]: the cheapest way to run blocks candidates[i].Span.Start..blockCount starting with candidates[i].
        // Successors start later than their predecessor, so filling by descending start sees every successor first.
        var best = new Step[candidates.Length];
        var hop = options.HopCost.TotalSeconds;
        var unknown = options.UnknownRtt.TotalSeconds;
        for (var i = candidates.Length - 1; i >= 0; i--)
        {
            var server = candidates[i];
            var own = (server.Span.Count / (server.Throughput > 0 && double.IsFinite(server.Throughput) ? server.Throughput : options.DefaultThroughput)) + hop;
            if (server.Span.End == blockCount)
            {
                best[i] = new Step(own, 1, -1);
                continue;
            }

            best[i] = new Step(double.PositiveInfinity, 0, -1);
            if (!byStart.TryGetValue(server.Span.End, out var successors))
            {
                continue;
            }

            foreach (var j in successors)
            {
                if (double.IsPositiveInfinity(best[j].Cost))
                {
                    continue;
                }

                var rtt = server.NextServerRtts.TryGetValue(candidates[j].PeerId, out var measured) && measured >= TimeSpan.Zero ? measured.TotalSeconds : unknown;
                var candidate = new Step(own + rtt + best[j].Cost, best[j].Hops + 1, j);
                if (IsBetter(candidate, best[i], candidates))
                {
                    best[i] = candidate;
                }
            }
        }

        var first = -1;
        if (byStart.TryGetValue(0, out var starters))
        {
            foreach (var i in starters)
            {
                if (!double.IsPositiveInfinity(best[i].Cost) && (first < 0 || IsBetter(new Step(best[i].Cost, best[i].Hops, i), new Step(best[first].Cost, best[first].Hops, first), candidates)))
                {
                    first = i;
                }
            }
        }

        if (first < 0)
        {
            return null;
        }

        var chain = new List<ServerInfo>();
        for (var at = first; at >= 0; at = best[at].Next)
        {
            chain.Add(candidates[at]);
        }

        return [.. chain];
    }

    /// <summary>The cost <see cref="Plan"/> gives a chain (for tests and diagnostics).</summary>
    public static double Cost(IReadOnlyList<ServerInfo> chain, SwarmSequenceOptions options)
    {
        var total = 0.0;
        for (var i = 0; i < chain.Count; i++)
        {
            var server = chain[i];
            total += (server.Span.Count / (server.Throughput > 0 && double.IsFinite(server.Throughput) ? server.Throughput : options.DefaultThroughput)) + options.HopCost.TotalSeconds;
            if (i + 1 < chain.Count)
            {
                total += server.NextServerRtts.TryGetValue(chain[i + 1].PeerId, out var rtt) && rtt >= TimeSpan.Zero ? rtt.TotalSeconds : options.UnknownRtt.TotalSeconds;
            }
        }

        return total;
    }

    /// <summary>
    /// Why no chain exists: the blocks no usable server covers, or, when all are covered, that whole spans cannot tile
    /// them; lists the usable spans and the excluded servers.
    /// </summary>
    public static string DescribeNoChain(string modelId, int blockCount, IReadOnlyList<ServerInfo> online, IReadOnlySet<string>? exclude)
    {
        var usable = online.Where(s => s.Span.End <= blockCount && (exclude is null || !exclude.Contains(s.PeerId))).OrderBy(s => s.Span.Start).ThenBy(s => s.Span.End).ThenBy(s => s.PeerId, StringComparer.Ordinal).ToArray();
        var covered = new bool[blockCount];
        foreach (var server in usable)
        {
            for (var b = server.Span.Start; b < server.Span.End; b++)
            {
                covered[b] = true;
            }
        }

        var gaps = new List<BlockRange>();
        for (var b = 0; b < blockCount;)
        {
            if (covered[b])
            {
                b++;
                continue;
            }

            var start = b;
            while (b < blockCount && !covered[b])
            {
                b++;
            }

            gaps.Add(new BlockRange(start, b));
        }

        var message = new StringBuilder();
        if (gaps.Count > 0)
        {
            message.Append("no online server covers blocks ").AppendJoin(", ", gaps).Append(" of model ").Append(modelId);
        }
        else
        {
            message.Append("every block of model ").Append(modelId)
                .Append(" is covered by an online server, but their whole spans do not tile blocks 0:")
                .Append(blockCount.ToString(CultureInfo.InvariantCulture))
                .Append(" (a server only runs its whole span)");
        }

        message.Append(" (online spans: ");
        if (usable.Length == 0)
        {
            message.Append("none");
        }
        else
        {
            message.AppendJoin(", ", usable.Select(s => $"{s.Span} by {Short(s.PeerId)}"));
        }

        var excluded = exclude is null ? [] : online.Where(s => exclude.Contains(s.PeerId)).Select(s => Short(s.PeerId)).Order(StringComparer.Ordinal).ToArray();
        if (excluded.Length > 0)
        {
            message.Append("; excluded: ").AppendJoin(", ", excluded);
        }

        return message.Append(')').ToString();
    }

    /// <summary>The short form of a peer id shown to people: its first 8 characters and an ellipsis.</summary>
    public static string Short(string peerId) => peerId.Length <= 9 ? peerId : string.Concat(peerId.AsSpan(0, 8), "…");

    private static int CompareBySpan(ServerInfo a, ServerInfo b)
    {
        var c = a.Span.Start.CompareTo(b.Span.Start);
        if (c == 0)
        {
            c = a.Span.End.CompareTo(b.Span.End);
        }

        return c != 0 ? c : string.CompareOrdinal(a.PeerId, b.PeerId);
    }

    private static bool IsBetter(Step candidate, Step current, ServerInfo[] candidates)
    {
        if (candidate.Cost != current.Cost)
        {
            return candidate.Cost < current.Cost;
        }

        if (candidate.Hops != current.Hops)
        {
            return candidate.Hops < current.Hops;
        }

        return current.Next < 0 || (candidate.Next >= 0 && string.CompareOrdinal(candidates[candidate.Next].PeerId, candidates[current.Next].PeerId) < 0);
    }

    private readonly record struct Step(double Cost, int Hops, int Next);

    private sealed class Entry(ServerInfo info)
    {
        public ServerInfo Info { get; } = info;

        public DateTimeOffset ExpiresAt { get; set; } = info.ExpiresAt;

        public bool AllOnline { get; set; } = true;

        public string? Problem { get; set; }
    }
}
