using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Cli.Swarm;
using Petals.Client;
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

        var command = new Command("swarm", "Start N `petals serve` processes on 127.0.0.1 splitting the model evenly, generate through them, print the text and each server's statistics, stop them.")
        {
            model, servers, prompt, maxNewTokens, temperature, seed, threads, cacheTokens, startupTimeout, wireCodec, output,
        };

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var path = parse.GetValue(model)!;
            if (!File.Exists(path) && !Directory.Exists(path))
            {
                throw new FileNotFoundException($"Model '{path}' does not exist.", path);
            }

            var options = new GenerationOptions
            {
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
            var serverArguments = new List<string>();
            if (parse.GetValue(threads) is { } t)
            {
                serverArguments.AddRange(["--threads", t.ToString(CultureInfo.InvariantCulture)]);
            }

            if (parse.GetValue(cacheTokens) is { } c)
            {
                serverArguments.AddRange(["--cache-tokens", c.ToString(CultureInfo.InvariantCulture)]);
            }

            var processes = new List<ServerProcess>();
            try
            {
                var start = Stopwatch.StartNew();
                for (var i = 0; i < spans.Length; i++)
                {
                    processes.Add(ServerProcess.Start(
                        string.Create(CultureInfo.InvariantCulture, $"server {i + 1}"),
                        ["--model", Path.GetFullPath(path), "--blocks", $"{spans[i].Start}:{spans[i].End}", "--host", "127.0.0.1", "--port", "0", .. serverArguments]));
                }

                var timeout = TimeSpan.FromSeconds(parse.GetValue(startupTimeout));
                var addresses = await Task.WhenAll(processes.Select(p => p.WaitUntilListeningAsync(timeout, ct))).ConfigureAwait(false);
                for (var i = 0; i < processes.Count; i++)
                {
                    context.Info(string.Create(CultureInfo.InvariantCulture, $"{processes[i].Name}: blocks {spans[i]} at {addresses[i]} (pid {processes[i].ProcessId}, ready in {processes[i].StartupTime!.Value.TotalMilliseconds:F0} ms)"));
                }

                context.Info($"{processes.Count} servers ready", start);
                GenerationRun run;
                long bytesSent;
                long bytesReceived;
                using (var lm = await RemoteModel.ConnectAsync(
                    path,
                    new TcpTransport(),
                    addresses,
                    new RemoteSequenceOptions { Codec = SwarmOptions.ParseCodec(parse.GetValue(wireCodec)) },
                    cancellationToken: ct).ConfigureAwait(false))
                {
                    run = await GenerateCommand.RunAsync(context, lm, parse.GetValue(prompt)!, options, json, ct).ConfigureAwait(false);
                    var remote = (RemoteTransformerBlocks)lm.Blocks;
                    bytesSent = remote.BytesSent;
                    bytesReceived = remote.BytesReceived;
                }

                var stopped = await Task.WhenAll(processes.Select(p => p.StopAsync(TimeSpan.FromSeconds(15)))).ConfigureAwait(false);
                WriteStatistics(context, json, processes, spans, addresses, stopped, run, bytesSent, bytesReceived);
                return stopped.All(s => s) ? 0 : CliContext.SwarmError;
            }
            finally
            {
                foreach (var process in processes)
                {
                    await process.DisposeAsync().ConfigureAwait(false);
                }
            }
        }, cancellationToken));
        return command;
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

    private static void WriteStatistics(CliContext context, bool json, List<ServerProcess> processes, BlockRange[] spans, PeerAddress[] addresses, bool[] stopped, GenerationRun run, long bytesSent, long bytesReceived)
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
                w.WriteStartArray("servers");
                for (var i = 0; i < processes.Count; i++)
                {
                    w.WriteStartObject();
                    w.WriteString("name", processes[i].Name);
                    w.WriteString("blocks", spans[i].ToString());
                    w.WriteString("address", addresses[i].ToString());
                    w.WriteNumber("startup_ms", processes[i].StartupTime!.Value.TotalMilliseconds);
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
            text.Append(CultureInfo.InvariantCulture, $"  {processes[i].Name}: blocks {spans[i]} at {addresses[i]}, ready in {processes[i].StartupTime!.Value.TotalMilliseconds:F0} ms, ");
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

        context.Output.Write(text.ToString());
    }
}
