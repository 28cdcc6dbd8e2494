using System.Globalization;
using Petals.Discovery;

namespace Petals.Server.Http.Health;

/// <summary>Turns what <see cref="SwarmReader"/> read into the monitor's state.</summary>
internal static class SwarmHealthBuilder
{
    public static ModelHealth Build(SwarmModelReport report, DateTimeOffset now)
    {
        var blocks = new List<BlockHealth>(report.Blocks.Count);
        var servers = new Dictionary<string, ServerInfo>(StringComparer.Ordinal);
        var covered = 0;
        foreach (var block in report.Blocks)
        {
            var online = 0;
            var throughput = 0.0;
            foreach (var server in block.Servers)
            {
                servers.TryAdd(server.PeerId, server);
                if (server.State == ServerState.Online)
                {
                    online++;
                    throughput += server.Throughput;
                }
            }

            covered += online > 0 ? 1 : 0;
            blocks.Add(new BlockHealth(block.Block, online, Math.Round(throughput, 3)));
        }

        var rows = servers.Values
            .OrderBy(s => s.Span.Start).ThenBy(s => s.PeerId, StringComparer.Ordinal)
            .Select(s => ToHealth(s, now))
            .ToList();
        return new ModelHealth(report.Model.ModelId, report.Model.BlockCount, rows.Count, report.Chain is not null, report.Problem, covered, blocks, rows, report.Ignored);
    }

    public static ServerHealth ToHealth(ServerInfo server, DateTimeOffset now) => new(
        server.PeerId,
        server.PublicName,
        server.Address.ToString(),
        StateName(server.State),
        server.Span.Start,
        server.Span.End,
        server.Throughput,
        server.ThroughputMethod,
        server.CacheTokensLeft,
        server.DType.ToString(),
        server.Quantization,
        server.Adapters,
        server.Version,
        Math.Round(Math.Max(0, (server.ExpiresAt - now).TotalSeconds), 1),
        server.NextServerRtts.OrderBy(p => p.Key, StringComparer.Ordinal).ToDictionary(p => p.Key, p => Math.Round(p.Value.TotalMilliseconds, 3), StringComparer.Ordinal));

    public static string StateName(ServerState state) => state switch
    {
        ServerState.Online => "online",
        ServerState.Joining => "joining",
        ServerState.Offline => "offline",
        _ => ((int)state).ToString(CultureInfo.InvariantCulture),
    };
}
