using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Client;
using Petals.Discovery;
using Petals.Routing;
using Petals.Server.Http.Health;
using ModelReport = Petals.Server.Http.Health.SwarmModelReport;

namespace Petals.Cli.Commands;

/// <summary><c>petals status</c>: every model the swarm announces, each block's servers, and whether a full chain exists.</summary>
internal static class StatusCommand
{
    public static Command Create(CliContext context)
    {
        var initialPeers = ClientDiscovery.InitialPeersOption(required: true);
        var modelId = new Option<string?>("--model") { Description = "Show only this model id (as `petals status` lists it)." };
        var output = ModelOptions.Output();
        var insecure = TransportSecurity.Insecure();
        var noMultiplex = TransportSecurity.NoMultiplex();
        var requireQuant = QuantizationOptions.RequireQuant();
        requireQuant.Description = "Report the full chain of servers announcing exactly this weight quantization (none, int8, nf4, q8_0, q4_k, q4_k+q6_k, …) instead of any.";
        var command = new Command("status", "Show the models in the swarm, each block's servers (state, span, throughput, free cache, weight quantization) and whether a full chain of online servers exists.")
        {
            initialPeers, modelId, output, insecure, noMultiplex, requireQuant,
        };

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var required = QuantizationOptions.ParseRequired(parse.GetValue(requireQuant));
            TransportSecurity.Warn(context, parse.GetValue(insecure));
            await using var swarm = await ClientDiscovery.JoinAsync(parse.GetValue(initialPeers)!, parse.GetValue(insecure), !parse.GetValue(noMultiplex), ct).ConfigureAwait(false);
            foreach (var met in swarm.Met)
            {
                context.Info(met);
            }

            var reports = await ReadAsync(swarm.Discovery, parse.GetValue(modelId), ct, required).ConfigureAwait(false);
            var now = DateTimeOffset.UtcNow;
            if (ModelOptions.IsJson(parse.GetValue(output)))
            {
                context.WriteJsonLine(w => WriteJson(w, reports, now));
            }
            else
            {
                await context.Output.WriteAsync(FormatText(reports, now)).ConfigureAwait(false);
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>Reads the model index and every block of each model (or of <paramref name="only"/>): <see cref="SwarmReader.ReadAsync"/>.</summary>
    /// <exception cref="RemoteChainException">When <paramref name="only"/> is not in the model index.</exception>
    internal static Task<IReadOnlyList<ModelReport>> ReadAsync(IPeerDiscovery discovery, string? only, CancellationToken ct, string? requiredQuantization = null) =>
        SwarmReader.ReadAsync(discovery, only, requiredQuantization, ct);

    internal static string FormatText(IReadOnlyList<ModelReport> reports, DateTimeOffset now)
    {
        var text = new StringBuilder();
        if (reports.Count == 0)
        {
            return "no model is announced in the swarm\n";
        }

        foreach (var report in reports)
        {
            var model = report.Model;
            text.Append(CultureInfo.InvariantCulture, $"model {model.ModelId} ({model.BlockCount} blocks, {model.ServerCount} servers): ");
            text.Append(report.Chain is { } chain
                ? "full chain of online servers: " + string.Join(", ", chain.Select(s => $"{s.Blocks} by {ShortId(s.Server.PeerId)}"))
                : "NO full chain: " + report.Problem);
            text.Append('\n');

            string[] header = ["block", "peer", "name", "address", "state", "span", "throughput", "cache", "quant", "version", "expires"];
            var rows = new List<string[]> { header };
            foreach (var block in report.Blocks)
            {
                if (block.Servers.Count == 0)
                {
                    rows.Add([Invariant(block.Block), "-", "-", "-", "none", "-", "-", "-", "-", "-", "-"]);
                    continue;
                }

                foreach (var server in block.Servers.OrderBy(s => s.PeerId, StringComparer.Ordinal))
                {
                    rows.Add(
                    [
                        Invariant(block.Block),
                        ShortId(server.PeerId),
                        server.PublicName ?? "-",
                        server.Address.ToString(),
                        StateName(server.State),
                        server.Span.ToString(),
                        string.Create(CultureInfo.InvariantCulture, $"{server.Throughput:0.#} tok/s"),
                        Invariant(server.CacheTokensLeft),
                        server.Quantization ?? "-",
                        server.Version.Length == 0 ? "-" : server.Version,
                        string.Create(CultureInfo.InvariantCulture, $"{ExpiresIn(server, now):0} s"),
                    ]);
                }
            }

            var widths = Enumerable.Range(0, header.Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
            foreach (var row in rows)
            {
                text.Append("  ");
                for (var c = 0; c < row.Length; c++)
                {
                    text.Append(c == row.Length - 1 ? row[c] : row[c].PadRight(widths[c] + 2));
                }

                text.Append('\n');
            }

            foreach (var ignored in report.Ignored)
            {
                text.Append("  note: ").Append(ignored).Append('\n');
            }
        }

        return text.ToString();
    }

    internal static void WriteJson(Utf8JsonWriter w, IReadOnlyList<ModelReport> reports, DateTimeOffset now)
    {
        w.WriteStartObject();
        w.WriteStartArray("models");
        foreach (var report in reports)
        {
            w.WriteStartObject();
            w.WriteString("model_id", report.Model.ModelId);
            w.WriteNumber("block_count", report.Model.BlockCount);
            w.WriteNumber("server_count", report.Model.ServerCount);
            w.WriteStartObject("chain");
            w.WriteBoolean("complete", report.Chain is not null);
            w.WriteStartArray("servers");
            foreach (var segment in report.Chain ?? [])
            {
                w.WriteStartObject();
                w.WriteString("peer_id", segment.Server.PeerId);
                w.WriteString("address", segment.Server.Address.ToString());
                w.WriteString("span", segment.Server.Span.ToString());
                w.WriteString("blocks", segment.Blocks.ToString());
                w.WriteEndObject();
            }

            w.WriteEndArray();
            if (report.Problem is null)
            {
                w.WriteNull("problem");
            }
            else
            {
                w.WriteString("problem", report.Problem);
            }

            w.WriteEndObject();
            w.WriteStartArray("blocks");
            foreach (var block in report.Blocks)
            {
                w.WriteStartObject();
                w.WriteNumber("block", block.Block);
                w.WriteStartArray("servers");
                foreach (var server in block.Servers.OrderBy(s => s.PeerId, StringComparer.Ordinal))
                {
                    w.WriteStartObject();
                    w.WriteString("peer_id", server.PeerId);
                    if (server.PublicName is null)
                    {
                        w.WriteNull("public_name");
                    }
                    else
                    {
                        w.WriteString("public_name", server.PublicName);
                    }

                    w.WriteString("address", server.Address.ToString());
                    w.WriteString("state", StateName(server.State));
                    w.WriteString("span", server.Span.ToString());
                    w.WriteNumber("throughput", server.Throughput);
                    if (server.ThroughputMethod is null)
                    {
                        w.WriteNull("throughput_method");
                    }
                    else
                    {
                        w.WriteString("throughput_method", server.ThroughputMethod);
                    }

                    w.WriteNumber("cache_tokens_left", server.CacheTokensLeft);
                    w.WriteString("dtype", server.DType.ToString());
                    if (server.Quantization is null)
                    {
                        w.WriteNull("quantization");
                    }
                    else
                    {
                        w.WriteString("quantization", server.Quantization);
                    }

                    w.WriteString("version", server.Version);
                    w.WriteNumber("expires_in_seconds", Math.Round(ExpiresIn(server, now), 1));
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartArray("ignored");
            foreach (var ignored in report.Ignored)
            {
                w.WriteStringValue(ignored);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static double ExpiresIn(ServerInfo server, DateTimeOffset now) => Math.Max(0, (server.ExpiresAt - now).TotalSeconds);

    private static string StateName(ServerState state) => state switch
    {
        ServerState.Online => "online",
        ServerState.Joining => "joining",
        ServerState.Offline => "offline",
        _ => ((int)state).ToString(CultureInfo.InvariantCulture),
    };

    private static string ShortId(string peerId) => peerId.Length <= 9 ? peerId : string.Concat(peerId.AsSpan(0, 8), "…");

    private static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);
}
