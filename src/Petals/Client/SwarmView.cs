using System.Globalization;
using Petals.Discovery;

namespace Petals.Client;

/// <summary>
/// What one read of the swarm's announcements gives a sequence manager: one entry per usable online server, and why
/// other servers were left out.
/// </summary>
/// <param name="Online">One entry per online server (its expiry the earliest of its records), ordered by span then peer id.</param>
/// <param name="Ignored">A sentence per server whose announcements were contradictory or out of range.</param>
internal sealed record SwarmView(IReadOnlyList<ServerInfo> Online, IReadOnlyList<string> Ignored)
{
    /// <summary>The view before the first read.</summary>
    public static SwarmView Empty { get; } = new([], []);

    /// <summary>
    /// Groups the announcements by peer id, keeping only each peer's latest announcement (the records with its latest
    /// expiration; older ones are leftovers of an earlier announcement). A server is kept when every record of its latest
    /// announcement says online, names the same span and address, is stored under a block of that span, and the span ends
    /// within <paramref name="blockCount"/>.
    /// </summary>
    public static SwarmView Collect(IReadOnlyList<BlockServers> blocks, int blockCount, DateTimeOffset now)
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
                ignored.Add($"server {PeerIds.Short(peerId)} is ignored: {problem}");
            }
            else if (entry.AllOnline)
            {
                online.Add(entry.Info with { ExpiresAt = entry.ExpiresAt });
            }
        }

        online.Sort(CompareBySpan);
        ignored.Sort(StringComparer.Ordinal);
        return new SwarmView(online, ignored);
    }

    /// <summary>Whether <paramref name="info"/> has expired at <paramref name="now"/> (an unset expiry never does).</summary>
    public static bool IsExpired(ServerInfo info, DateTimeOffset now) => info.ExpiresAt != default && info.ExpiresAt <= now;

    private static int CompareBySpan(ServerInfo a, ServerInfo b)
    {
        var c = a.Span.Start.CompareTo(b.Span.Start);
        if (c == 0)
        {
            c = a.Span.End.CompareTo(b.Span.End);
        }

        return c != 0 ? c : string.CompareOrdinal(a.PeerId, b.PeerId);
    }

    private sealed class Entry(ServerInfo info)
    {
        public ServerInfo Info { get; } = info;

        public DateTimeOffset ExpiresAt { get; set; } = info.ExpiresAt;

        public bool AllOnline { get; set; } = true;

        public string? Problem { get; set; }
    }
}
