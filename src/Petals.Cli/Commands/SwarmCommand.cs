using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Cli.Swarm;
using Petals.Client;
using Petals.Discovery;
using Petals.Formats;
using Petals.Generation;
using Petals.Models;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Cli.Commands;

/// <summary><c>petals swarm</c>: a whole swarm on this machine: N server processes, generation through them, their statistics.</summary>
internal static class SwarmCommand
{
    public static Command Create(CliContext context)
    {
        var model = ModelOptions.Model();
        var servers = new Option<int>("--servers") { Description = "How many server processes to split the blocks over.", DefaultValueFactory = _ => 3 };
        var prompt = new Option<string>("--prompt") { Description = "The prompt text.", DefaultValueFactory = _ => "Once upon a time" };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "The most tokens to generate.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature; 0 means greedy.", DefaultValueFactory = _ => 0.0 };
        var seed = new Option<int?>("--seed") { Description = "Random seed for sampling." };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for each server (default: all cores)." };
        var cacheTokens = new Option<int?>("--cache-tokens") { Description = "Attention cache budget of each server, in tokens (default: the server's)." };
        var startupTimeout = new Option<int>("--startup-timeout") { Description = "Seconds to wait for every server to listen.", DefaultValueFactory = _ => 120 };
        var wireCodec = SwarmOptions.WireCodec();
        var output = ModelOptions.Output();
        var insecure = TransportSecurity.Insecure();
        var noMultiplex = TransportSecurity.NoMultiplex();
        var quant = QuantizationOptions.Quant("the servers");
        quant.Description += " One value for every server, or one per server, comma-separated (none,nf4,int8).";
        var requireQuant = QuantizationOptions.RequireQuant();
        var adapters = AdapterOptions.Adapters("every server");
        var adapter = AdapterOptions.Adapter();

        var command = new Command("swarm", "Start a bootstrap DHT node (`petals dht`) and N `petals serve --initial-peers` processes on 127.0.0.1 splitting the model evenly, find them through the DHT, generate through them, print the text and each server's statistics, stop them.")
        {
            model, servers, prompt, maxNewTokens, temperature, seed, threads, cacheTokens, startupTimeout, wireCodec, output, insecure, noMultiplex,
            quant, requireQuant, adapters, adapter,
        };

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var path = parse.GetValue(model)!;
            var plain = parse.GetValue(insecure);
            TransportSecurity.Warn(context, plain);
            if (!File.Exists(path) && !Directory.Exists(path))
            {
                throw new FileNotFoundException($"Model '{path}' does not exist.", path);
            }

            var adapterDirectories = AdapterOptions.ParseAdapters(parse.GetValue(adapters));
            var options = new GenerationOptions
            {
                Adapter = AdapterOptions.ParseAdapter(parse.GetValue(adapter)),
                MaxNewTokens = parse.GetValue(maxNewTokens),
                Sampling = new SamplingOptions { Temperature = parse.GetValue(temperature), Seed = parse.GetValue(seed) },
            };
            options.Validate();
            var json = ModelOptions.IsJson(parse.GetValue(output));
            ModelConfig config;
            using (var weights = ModelLoader.Open(path))
            {
                config = weights.Config;
            }

            var spans = Split(config.NumLayers, parse.GetValue(servers));
            var quantizations = QuantizationOptions.ParsePerServer(parse.GetValue(quant), spans.Length);
            var required = QuantizationOptions.ParseRequired(parse.GetValue(requireQuant));
            // Every process speaks TLS with its own fresh key (addresses carry the ids), or all plain TCP with --insecure.
            var multiplex = !parse.GetValue(noMultiplex);
            string[] security = [.. plain ? ["--insecure"] : Array.Empty<string>(), .. multiplex ? Array.Empty<string>() : ["--no-multiplex"]];
            var serverArguments = new List<string>(security);
            if (parse.GetValue(threads) is { } t)
            {
                serverArguments.AddRange(["--threads", t.ToString(CultureInfo.InvariantCulture)]);
            }

            if (parse.GetValue(cacheTokens) is { } c)
            {
                serverArguments.AddRange(["--cache-tokens", c.ToString(CultureInfo.InvariantCulture)]);
            }

            if (adapterDirectories.Count > 0)
            {
                serverArguments.AddRange(["--adapters", string.Join(",", adapterDirectories.Select(a => $"{a.Key}={Path.GetFullPath(a.Value)}"))]);
            }

            var processes = new List<ServerProcess>();
            ServerProcess? bootstrap = null;
            try
            {
                var timeout = TimeSpan.FromSeconds(parse.GetValue(startupTimeout));
                var start = Stopwatch.StartNew();
                bootstrap = ServerProcess.Start("bootstrap", "dht", "dht ", ["--host", "127.0.0.1", "--port", "0", .. security]);
                var bootstrapAddress = await bootstrap.WaitUntilListeningAsync(timeout, ct).ConfigureAwait(false);
                context.Info(string.Create(CultureInfo.InvariantCulture, $"bootstrap DHT node at {bootstrapAddress} (pid {bootstrap.ProcessId}, ready in {bootstrap.StartupTime!.Value.TotalMilliseconds:F0} ms)"));

                // The client joins the DHT first, so that it can watch each server become usable.
                await using var discovery = await ClientDiscovery.JoinAsync(bootstrapAddress.ToString(), plain, multiplex, ct).ConfigureAwait(false);
                var modelId = ModelIdentity.Compute(path, config);
                var launched = new Stopwatch[spans.Length];
                for (var i = 0; i < spans.Length; i++)
                {
                    launched[i] = Stopwatch.StartNew();
                    processes.Add(ServerProcess.Start(
                        string.Create(CultureInfo.InvariantCulture, $"server {i + 1}"),
                        ["--model", Path.GetFullPath(path), "--blocks", $"{spans[i].Start}:{spans[i].End}", "--host", "127.0.0.1", "--port", "0",
                            "--initial-peers", bootstrapAddress.ToString(), "--quant", quantizations[i].Value, .. serverArguments]));
                }

                var usable = await WaitUntilUsableAsync(discovery.Discovery, modelId, config.NumLayers, processes, launched, timeout, ct).ConfigureAwait(false);
                var addresses = await Task.WhenAll(processes.Select(p => p.WaitUntilListeningAsync(timeout, ct))).ConfigureAwait(false);
                for (var i = 0; i < processes.Count; i++)
                {
                    context.Info(string.Create(CultureInfo.InvariantCulture,
                        $"{processes[i].Name}: blocks {spans[i]} at {addresses[i]}, --quant {quantizations[i]} (pid {processes[i].ProcessId}, listening in {processes[i].StartupTime!.Value.TotalMilliseconds:F0} ms, usable by the client in {usable[i].TotalMilliseconds:F0} ms)"));
                }

                context.Info($"{processes.Count} servers found through the DHT", start);
                GenerationRun run;
                long bytesSent;
                long bytesReceived;
                await using (var client = discovery.CreateClient(path, modelId: null, parse.GetValue(wireCodec), allowedPeers: [], blockedPeers: [], requiredQuantization: required))
                using (var lm = await client.ConnectAsync(ct).ConfigureAwait(false))
                {
                    run = await GenerateCommand.RunAsync(context, lm, parse.GetValue(prompt)!, options, json, ct).ConfigureAwait(false);
                    var remote = (RemoteTransformerBlocks)lm.Blocks;
                    foreach (var span in remote.Spans)
                    {
                        context.Info($"blocks {span.Blocks} on {span}, weights {span.Info.Quantization ?? "(not stated)"}");
                    }

                    bytesSent = remote.BytesSent;
                    bytesReceived = remote.BytesReceived;
                }

                var stopped = await Task.WhenAll(processes.Select(p => p.StopAsync(TimeSpan.FromSeconds(15)))).ConfigureAwait(false);
                var bootstrapStopped = await bootstrap.StopAsync(TimeSpan.FromSeconds(15)).ConfigureAwait(false);
                WriteStatistics(context, json, bootstrap, processes, spans, addresses, usable, stopped, run, bytesSent, bytesReceived);
                return stopped.All(s => s) && bootstrapStopped ? 0 : CliContext.SwarmError;
            }
            finally
            {
                foreach (var process in processes)
                {
                    await process.DisposeAsync().ConfigureAwait(false);
                }

                if (bootstrap is not null)
                {
                    await bootstrap.DisposeAsync().ConfigureAwait(false);
                }
            }
        }, cancellationToken));
        return command;
    }

    /// <summary>
    /// Polls the DHT (as a client sees it) until every server's blocks are announced online, and returns, per server, the
    /// time from its launch to that moment: when a client could first route through it.
    /// </summary>
    private static async Task<TimeSpan[]> WaitUntilUsableAsync(
        IPeerDiscovery discovery, string modelId, int blockCount, List<ServerProcess> processes, Stopwatch[] launched, TimeSpan timeout, CancellationToken ct)
    {
        var usable = new TimeSpan?[processes.Count];
        var deadline = Stopwatch.StartNew();
        while (usable.Any(u => u is null))
        {
            var blocks = await discovery.GetServersAsync(modelId, new BlockRange(0, blockCount), ct).ConfigureAwait(false);
            for (var i = 0; i < processes.Count; i++)
            {
                if (usable[i] is null && processes[i].DhtAddress?.PeerId is { } id
                    && blocks.Any(b => b.Servers.Any(s => s.PeerId == id && s.State == ServerState.Online)))
                {
                    usable[i] = launched[i].Elapsed;
                }
            }

            if (usable.Any(u => u is null))
            {
                if (processes.FirstOrDefault(p => p.ExitCode is not null) is { } exited)
                {
                    throw new InvalidOperationException(exited.Describe("exited before it was online"));
                }

                if (deadline.Elapsed > timeout)
                {
                    var late = string.Join(", ", processes.Where((_, i) => usable[i] is null).Select(p => p.Name));
                    throw new TimeoutException(string.Create(CultureInfo.InvariantCulture, $"{late} not announced online in the DHT after {timeout.TotalSeconds:0} s."));
                }

                await Task.Delay(TimeSpan.FromMilliseconds(25), ct).ConfigureAwait(false);
            }
        }

        return [.. usable.Select(u => u!.Value)];
    }

    /// <summary>Splits <paramref name="layers"/> blocks into <paramref name="servers"/> contiguous spans whose sizes differ by at most one.</summary>
    internal static BlockRange[] Split(int layers, int servers)
    {
        if (servers < 1 || servers > layers)
        {
            throw new ArgumentOutOfRangeException(nameof(servers), servers, string.Create(CultureInfo.InvariantCulture, $"--servers must be between 1 and the model's {layers} blocks."));
        }

        var spans = new BlockRange[servers];
        var start = 0;
        for (var i = 0; i < servers; i++)
        {
            var size = (layers / servers) + (i < layers % servers ? 1 : 0);
            spans[i] = new BlockRange(start, start + size);
            start += size;
        }

        return spans;
    }

    private static void WriteStatistics(
        CliContext context, bool json, ServerProcess bootstrap, List<ServerProcess> processes, BlockRange[] spans, PeerAddress[] addresses, TimeSpan[] usable, bool[] stopped, GenerationRun run, long bytesSent, long bytesReceived)
    {
        var tokens = Math.Max(1, run.GeneratedIds.Count);
        if (json)
        {
            context.WriteJsonLine(w =>
            {
                w.WriteStartObject();
                w.WriteNumber("generated_tokens", run.GeneratedIds.Count);
                w.WriteNumber("seconds", run.Seconds);
                w.WriteNumber("decode_tokens_per_second", run.DecodeTokensPerSecond);
                w.WriteNumber("client_bytes_sent", bytesSent);
                w.WriteNumber("client_bytes_received", bytesReceived);
                w.WriteStartObject("bootstrap");
                w.WriteString("address", bootstrap.DhtAddress?.ToString());
                w.WriteNumber("startup_ms", bootstrap.StartupTime!.Value.TotalMilliseconds);
                if (bootstrap.Stats is { } bootstrapStats)
                {
                    w.WritePropertyName("stats");
                    bootstrapStats.WriteTo(w);
                }

                w.WriteEndObject();
                w.WriteStartArray("servers");
                for (var i = 0; i < processes.Count; i++)
                {
                    w.WriteStartObject();
                    w.WriteString("name", processes[i].Name);
                    w.WriteString("blocks", spans[i].ToString());
                    w.WriteString("address", addresses[i].ToString());
                    w.WriteString("peer_id", processes[i].DhtAddress?.PeerId);
                    w.WriteNumber("startup_ms", processes[i].StartupTime!.Value.TotalMilliseconds);
                    w.WriteNumber("usable_ms", usable[i].TotalMilliseconds);
                    w.WriteBoolean("stopped_cleanly", stopped[i]);
                    if (processes[i].Stats is { } stats)
                    {
                        w.WritePropertyName("stats");
                        stats.WriteTo(w);
                    }

                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            });
            return;
        }

        var text = new StringBuilder();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"swarm: {processes.Count} servers, {run.GeneratedIds.Count} tokens in {run.Seconds:F2} s ({run.DecodeTokensPerSecond:F1} tokens/s after the first), client sent {bytesSent} and received {bytesReceived} bytes ({(bytesSent + bytesReceived) / (double)tokens / processes.Count:F0} per token per server)"));
        for (var i = 0; i < processes.Count; i++)
        {
            text.Append(CultureInfo.InvariantCulture,
                $"  {processes[i].Name}: blocks {spans[i]} at {addresses[i]}, listening in {processes[i].StartupTime!.Value.TotalMilliseconds:F0} ms, usable in {usable[i].TotalMilliseconds:F0} ms, ");
            text.Append(stopped[i] ? "stopped cleanly" : "killed (did not stop in time)");
            if (processes[i].Stats is { } stats)
            {
                foreach (var property in stats.EnumerateObject())
                {
                    text.Append(", ").Append(property.Name).Append(' ').Append(property.Value.ToString());
                }
            }
            else
            {
                text.Append(", no statistics printed");
            }

            text.AppendLine();
        }

        text.Append(CultureInfo.InvariantCulture, $"  bootstrap: DHT node at {bootstrap.DhtAddress}");
        if (bootstrap.Stats is { } bootstrapStats)
        {
            foreach (var property in bootstrapStats.EnumerateObject())
            {
                text.Append(", ").Append(property.Name).Append(' ').Append(property.Value.ToString());
            }
        }

        text.AppendLine();
        context.Output.Write(text.ToString());
    }
}
