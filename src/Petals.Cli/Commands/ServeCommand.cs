using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Petals.Discovery;
using Petals.Formats;
using Petals.Hosting;
using Petals.Models;
using Petals.Server;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Cli.Commands;

/// <summary><c>petals serve</c>: serves a span of blocks over TLS (TCP with <c>--insecure</c>) until Ctrl-C / SIGTERM.</summary>
internal static class ServeCommand
{
    public static Command Create(CliContext context)
    {
        var model = ModelOptions.Model();
        var threads = ModelOptions.Threads();
        var blocks = new Option<string?>("--blocks") { Description = "The span of blocks to serve by hand, START:END (END exclusive); the server never moves. Without it the swarm places the server (needs --initial-peers or --new-swarm)." };
        var numBlocks = new Option<int?>("--num-blocks") { Description = "Without --blocks: how many blocks to serve, placed where the swarm is weakest (default: as many as --memory-budget holds)." };
        var memoryBudget = new Option<string?>("--memory-budget")
        {
            Description = "Without --blocks and --num-blocks: the memory for weights, attention cache and working buffers, in bytes or with a unit (8GiB, 512MiB); default half of the memory available at start.",
        };
        var balanceDefaults = new BlockBalancingOptions();
        var balancePeriod = new Option<double>("--balance-period")
        {
            Description = "Seconds between checks whether moving to other blocks would raise the swarm's throughput (servers placed by the swarm); 0 never moves.",
            DefaultValueFactory = _ => balanceDefaults.BalancePeriod.TotalSeconds,
        };
        var balanceQuality = new Option<double>("--balance-quality")
        {
            Description = "Move only when the swarm's throughput is below this share of what it would be after the move (in (0, 1]; above 1 moves at every check).",
            DefaultValueFactory = _ => balanceDefaults.BalanceQuality,
        };
        var host = new Option<string>("--host") { Description = "The address to listen on.", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "The TCP port; 0 picks a free one.", DefaultValueFactory = _ => 0 };
        var defaults = new BlockServerOptions();
        var cacheTokens = new Option<long>("--cache-tokens") { Description = "Attention cache budget in tokens for the whole span (a session takes batch x max length, in proportion when it runs only part of the span).", DefaultValueFactory = _ => defaults.CacheTokens };
        var maxBatchTokens = new Option<int>("--max-batch-tokens") { Description = "The most batch x tokens per request.", DefaultValueFactory = _ => defaults.MaxBatchTokens };
        var maxLength = new Option<int>("--max-length") { Description = "The longest session (tokens) a client may open.", DefaultValueFactory = _ => defaults.MaxSessionLength };
        var idleTimeout = new Option<double>("--idle-timeout") { Description = "Seconds a session may stay without steps before its cache is freed.", DefaultValueFactory = _ => defaults.SessionIdleTimeout.TotalSeconds };
        var cacheWait = new Option<double>("--cache-wait") { Description = "Seconds a session that does not fit the cache budget waits before it gets the cache-full error.", DefaultValueFactory = _ => defaults.CacheWaitTimeout.TotalSeconds };
        var maxCacheShare = new Option<double>("--max-cache-share")
        {
            Description = "The share of the cache budget one client (remote host) may hold at once, in (0, 1] (at least one full-length session); more is refused with the retryable cache_busy.",
            DefaultValueFactory = _ => defaults.MaxCacheShare,
        };
        var maxConnections = new Option<int>("--max-connections") { Description = "The most client connections open at once; more are refused at once (connection_limit). Default: half the open-file limit, 16 to 4096.", DefaultValueFactory = _ => defaults.MaxConnections };
        var maxPerAddress = new Option<int>("--max-connections-per-address") { Description = "The most connections open at once from one IP address.", DefaultValueFactory = _ => defaults.MaxConnectionsPerAddress };
        var handshakeTimeout = new Option<double>("--handshake-timeout") { Description = "Seconds a new connection may take to send its preamble.", DefaultValueFactory = _ => defaults.HandshakeTimeout.TotalSeconds };
        var connectionIdleTimeout = new Option<double>("--connection-idle-timeout") { Description = "Seconds a connection without a session may stay silent before it is closed.", DefaultValueFactory = _ => defaults.ConnectionIdleTimeout.TotalSeconds };
        var minReceiveRate = new Option<long>("--min-receive-rate") { Description = "Bytes per second a message in progress must arrive at (averaged over 10 s windows); 0 turns the check off.", DefaultValueFactory = _ => defaults.MinReceiveRate };
        var maxReassemblyBytes = new Option<long>("--max-reassembly-bytes") { Description = "The most bytes chunked messages being received may hold at once over all connections.", DefaultValueFactory = _ => defaults.MaxReassemblyBytes };
        var stopWhenInputCloses = new Option<bool>("--stop-when-input-closes")
        {
            Description = "Stop (as on SIGTERM) when standard input reaches its end: a parent that holds the other end of a pipe (petals swarm) takes its servers down with it, even when it is killed.",
        };
        var modelId = new Option<string?>("--model-id") { Description = "The model id clients must name (default: ModelIdentity of the model, e.g. stories260K-f32:llama-5x64-v512)." };
        var initialPeers = ClientDiscovery.InitialPeersOption();
        var newSwarm = new Option<bool>("--new-swarm") { Description = "Start a new swarm: this server's DHT node bootstraps from nobody (others join with --initial-peers and its dht address)." };
        var identity = DhtNodeStarter.Identity();
        var insecure = TransportSecurity.Insecure();
        var noMultiplex = TransportSecurity.NoMultiplex();
        var dhtPort = new Option<int>("--dht-port") { Description = "The TCP port of this server's DHT node (on --host); 0 picks a free one.", DefaultValueFactory = _ => 0 };
        var throughputOption = new Option<string?>("--throughput")
        {
            Description = "With discovery: the throughput to announce, tokens/s per block (N: announce N, measure nothing; eval: measure now and update the cache; default: the cached figure for this model, span size, executor, dtype and machine, else measure).",
        };
        var bandwidth = new Option<double>("--network-bandwidth")
        {
            Description = "With discovery: this machine's network bandwidth in Mbit/s; the announced throughput is the lesser of compute and what this bandwidth carries (hidden states in and out, fp32). 0 announces compute only.",
            DefaultValueFactory = _ => new ThroughputMeterOptions().NetworkBandwidthMbps ?? 0,
        };
        var quant = QuantizationOptions.Quant("the served blocks");
        var adapters = AdapterOptions.Adapters("the server");
        var throughputCache = new Option<string?>("--throughput-cache") { Description = "The throughput cache file (default $XDG_CACHE_HOME/petals/throughput.json, else ~/.cache/petals/throughput.json)." };
        var announceDefaults = new ServerAnnouncerOptions();
        var publicName = new Option<string?>("--public-name") { Description = "A name shown for this server in swarm monitors (petals status)." };
        var announceHost = new Option<string?>("--announce-host") { Description = "The host announced to clients instead of --host (e.g. a public IP when listening on 0.0.0.0)." };
        var announceInterval = new Option<double>("--announce-interval")
        {
            Description = "Seconds between republications of the announcement (it expires after 3 intervals unless republished).",
            DefaultValueFactory = _ => announceDefaults.AnnounceInterval.TotalSeconds,
        };

        var command = new Command(
            "serve",
            "Serve a span of a model's blocks to the swarm over TLS (plain TCP with --insecure) until Ctrl-C / SIGTERM; with --initial-peers or --new-swarm, announce it in the swarm's DHT.")
        {
            model, blocks, host, port, cacheTokens, maxBatchTokens, maxLength, idleTimeout, cacheWait, maxCacheShare, modelId, threads, stopWhenInputCloses,
            numBlocks, memoryBudget, balancePeriod, balanceQuality,
            initialPeers, newSwarm, identity, dhtPort, publicName, announceHost, announceInterval, insecure, noMultiplex,
            maxConnections, maxPerAddress, handshakeTimeout, connectionIdleTimeout, minReceiveRate, maxReassemblyBytes, throughputOption, throughputCache, bandwidth,
            quant, adapters,
        };

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var started = Stopwatch.StartNew();
            var quantization = QuantizationOptions.ParseQuant(parse.GetValue(quant));
            var adapterDirectories = AdapterOptions.ParseAdapters(parse.GetValue(adapters));
            var plain = parse.GetValue(insecure);
            TransportSecurity.Warn(context, plain);
            var path = parse.GetValue(model)!;
            if (!File.Exists(path) && !Directory.Exists(path))
            {
                throw new FileNotFoundException($"Model '{path}' does not exist.", path);
            }

            BlockRange? span = null;
            try
            {
                span = parse.GetValue(blocks) is { } blocksText ? BlockRange.Parse(blocksText) : null;
            }
            catch (FormatException e)
            {
                throw new ArgumentException($"--blocks: {e.Message}", e);
            }

            var placement = ParsePlacement(span, parse.GetValue(numBlocks), parse.GetValue(memoryBudget), parse.GetValue(balancePeriod), parse.GetValue(balanceQuality));

            var portValue = parse.GetValue(port);
            if (portValue is < 0 or > 65535)
            {
                throw new ArgumentException($"--port must be between 0 and 65535, not {portValue}.");
            }

            var t = parse.GetValue(threads);
            if (t is < 1)
            {
                throw new ArgumentException($"--threads must be at least 1, not {t}.");
            }

            // Blocks and model id are the host's to fill in; it validates these settings with the rest, before the DHT starts.
            var options = new BlockServerOptions
            {
                CacheTokens = parse.GetValue(cacheTokens),
                MaxBatchTokens = parse.GetValue(maxBatchTokens),
                MaxSessionLength = parse.GetValue(maxLength),
                SessionIdleTimeout = Seconds(parse.GetValue(idleTimeout), "--idle-timeout"),
                CacheWaitTimeout = Seconds(parse.GetValue(cacheWait), "--cache-wait"),
                MaxCacheShare = parse.GetValue(maxCacheShare),
                MaxConnections = parse.GetValue(maxConnections),
                MaxConnectionsPerAddress = parse.GetValue(maxPerAddress),
                HandshakeTimeout = Seconds(parse.GetValue(handshakeTimeout), "--handshake-timeout"),
                ConnectionIdleTimeout = Seconds(parse.GetValue(connectionIdleTimeout), "--connection-idle-timeout"),
                MinReceiveRate = parse.GetValue(minReceiveRate),
                MaxReassemblyBytes = parse.GetValue(maxReassemblyBytes),
            };

            // Discovery: exactly one of --initial-peers / --new-swarm turns it on; neither serves as before (clients use --peers).
            var peersText = parse.GetValue(initialPeers);
            var startSwarm = parse.GetValue(newSwarm);
            if (peersText is not null && startSwarm)
            {
                throw new ArgumentException("Give --initial-peers to join a swarm or --new-swarm to start one, not both.");
            }

            var throughputSettings = ParseThroughput(parse.GetValue(throughputOption), parse.GetValue(throughputCache), t, parse.GetValue(bandwidth));
            throughputSettings.Quantization = quantization.Value; // a figure measured with other weights is not reused
            var dhtPeers = peersText is null ? [] : ClientDiscovery.ParseInitialPeers(peersText, plain);
            var discover = startSwarm || peersText is not null;
            var announceOptions = new ServerAnnouncerOptions
            {
                AnnounceInterval = Seconds(parse.GetValue(announceInterval), "--announce-interval"),
                PublicName = parse.GetValue(publicName),
                AnnounceHost = parse.GetValue(announceHost),
            };
            if (!discover)
            {
                if (span is null)
                {
                    throw new ArgumentException("Give --blocks START:END to serve a span by hand, or --initial-peers ADDR[,ADDR] (or --new-swarm) to let the swarm place the server.");
                }

                foreach (var (name, given) in new (string, bool)[]
                {
                    ("--identity", parse.GetValue(identity) is not null && plain), ("--public-name", announceOptions.PublicName is not null), // over TLS --identity keeps the server's key
                    ("--announce-host", announceOptions.AnnounceHost is not null), ("--dht-port", parse.GetValue(dhtPort) != 0),
                    ("--throughput", parse.GetValue(throughputOption) is not null), ("--throughput-cache", parse.GetValue(throughputCache) is not null),
                    ("--network-bandwidth", parse.GetResult(bandwidth) is { Implicit: false }),
                })
                {
                    if (given)
                    {
                        throw new ArgumentException($"{name} needs discovery: add --initial-peers ADDR[,ADDR] or --new-swarm.");
                    }
                }
            }

            // The header only (the file is mapped): the model's blocks and the statistics' weight sizes. The server reads the span.
            using var weights = ModelLoader.Open(path);
            if (span is { } handPlaced && handPlaced.End > weights.Config.NumLayers)
            {
                throw new ArgumentException($"--blocks {handPlaced} goes past the model's {weights.Config.NumLayers} blocks.");
            }

            if (placement.NumBlocks is { } count && count > weights.Config.NumLayers)
            {
                throw new ArgumentException($"--num-blocks {count} is more than the model's {weights.Config.NumLayers} blocks.");
            }

            try
            {
                announceOptions.Validate();
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"--{Kebab(e.ParamName)}: {e.Message}", e);
            }

            // One key: the DHT node id and the TLS certificate (the handshake's peer id, the address's pin) come from it.
            using var key = discover || !plain ? DhtNodeStarter.LoadIdentity(parse.GetValue(identity)) : null;
            using var tls = key is null ? null : TransportSecurity.TlsIdentity(key, plain);
            await using var node = discover ? new DhtNode(key!) : null;

            // The server is the hosted service AddPetalsServer registers: the one start and stop order of every server.
            var services = new ServiceCollection();
            services.AddSingleton<Microsoft.Extensions.Logging.ILoggerFactory>(new CliLoggerFactory(context));
            var builder = services.AddPetalsServer(o =>
            {
                o.ModelPath = path;
                o.Blocks = span;
                o.NumBlocks = placement.NumBlocks;
                o.MemoryBudget = placement.MemoryBudget;
                o.Balancing = placement.Balancing;
                o.ListenAddress = PeerAddress.FromHostPort(TransportSecurity.Scheme(plain), parse.GetValue(host)!, portValue).ToString();
                o.ModelId = parse.GetValue(modelId);
                o.Server = options;
                o.Announcer = announceOptions;
                o.Throughput = throughputSettings;
                o.AdapterDirectories = adapterDirectories;
            }).UseCpuExecutor(o =>
            {
                o.ThreadCount = t ?? o.ThreadCount;
                o.Quantization = quantization;
            }).UseTcpTransport(o =>
            {
                o.Identity = tls;
                o.AllowUnpinnedTls = true; // an announced tls:// address without an id is still measured; the handshake binds its id to the key met
            });
            if (!parse.GetValue(noMultiplex))
            {
                builder.UseMultiplexing(); // many streams over one connection per peer pair, on the listener and on the announcer's pings
            }

            if (node is not null)
            {
                // Resolved when the server starts, after the node below has joined the swarm.
                builder.UseDiscovery(_ => new DhtPeerDiscovery(node));
            }

            await using var provider = services.BuildServiceProvider();
            await HostedAsync(() =>
            {
                _ = provider.GetRequiredService<IOptions<PetalsServerOptions>>().Value; // every setting checked before anything starts
                return Task.CompletedTask;
            }).ConfigureAwait(false);
            if (node is not null)
            {
                if (await DhtNodeStarter.StartAsync(node, tls, !parse.GetValue(noMultiplex), parse.GetValue(host)!, parse.GetValue(dhtPort), dhtPeers, line => context.Info(line), ct).ConfigureAwait(false) is { } failure)
                {
                    await context.Error.WriteLineAsync($"error: {failure}").ConfigureAwait(false);
                    return CliContext.SwarmError;
                }

                await context.Output.WriteLineAsync($"dht {DhtNodeStarter.AddressOf(node)}").ConfigureAwait(false);
                await context.Output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                if (announceOptions.AnnounceHost is null && parse.GetValue(host) is "0.0.0.0" or "::" or "[::]")
                {
                    context.Info($"warning: announcing the wildcard host {parse.GetValue(host)}, which clients cannot connect to: pass --announce-host with this machine's reachable address");
                }
            }

            var server = provider.GetRequiredService<IPetalsServer>();
            server.Moved += (_, moved) =>
            {
                lock (context)
                {
                    context.Output.WriteLine($"moved blocks {moved.From} -> {moved.To} listening {moved.Address}");
                    context.Output.Flush();
                    context.Info($"moved: {moved.Decision.Reason}");
                }
            };
            var hosted = provider.GetServices<IHostedService>().ToArray();
            foreach (var service in hosted)
            {
                await HostedAsync(() => service.StartAsync(ct)).ConfigureAwait(false);
            }

            if (server.Throughput is { } measured)
            {
                var how = measured.Source == "measured" ? "measured: " + measured.Method : measured.Source;
                context.Info(string.Create(CultureInfo.InvariantCulture, $"throughput {measured.TokensPerSecondPerBlock:F1} tokens/s per block ({how})"));
            }

            if (server.Placement is { ChosenBySwarm: true } placed)
            {
                context.Info($"placement: {placed.NumBlocks} blocks: {placed.SizeReason}");
                context.Info($"placement: blocks {placed.Span}: {placed.SpanReason}");
            }

            // SIGTERM / Ctrl-C cancel ct (PetalsCommand.RunAsync), so `stop` ends the wait below and the server stops cleanly.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var readyMs = started.Elapsed.TotalMilliseconds;
            var servedQuantization = server.Quantization; // what is announced: the executor's report, "none" when it reports nothing
            context.Info($"weights: quantization {servedQuantization} (--quant {quantization})");
            foreach (var (name, lora) in server.Adapters.OrderBy(a => a.Key, StringComparer.Ordinal))
            {
                context.Info($"adapter {name}: {lora}");
            }

            await context.Output.WriteLineAsync($"listening {server.LocalAddress} blocks {server.Blocks}").ConfigureAwait(false);
            await context.Output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            context.Info(string.Create(CultureInfo.InvariantCulture,
                $"ready in {readyMs:F0} ms: model {server.ModelId}, blocks {server.Blocks}, cache {options.CacheTokens} tokens"));

            if (parse.GetValue(stopWhenInputCloses))
            {
                _ = StopWhenInputClosesAsync(stop);
            }

            try
            {
                await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Ctrl-C, SIGTERM or the caller's token: shut down cleanly below.
            }

            // Offline (bounded by PetalsServerOptions.OfflineAnnounceTimeout), drain, stop, release.
            for (var i = hosted.Length - 1; i >= 0; i--)
            {
                await hosted[i].StopAsync(CancellationToken.None).ConfigureAwait(false);
            }

            var stats = server.GetStatistics();
            using var buffer = new MemoryStream();
            using (var writer = new System.Text.Json.Utf8JsonWriter(buffer, CliContext.JsonOptions))
            {
                WriteStatistics(writer, stats, readyMs, weights.SpanBytes(server.Placement.Span), weights.TotalBytes(), server.GetAnnouncerStatistics(), server.Throughput?.TokensPerSecondPerBlock ?? 0, servedQuantization);
            }

            await context.Output.WriteLineAsync("stats " + System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length)).ConfigureAwait(false);
            await context.Output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>Runs <paramref name="action"/>; the host's list of invalid settings becomes a usage error (exit code 1).</summary>
    private static async Task HostedAsync(Func<Task> action)
    {
        try
        {
            await action().ConfigureAwait(false);
        }
        catch (OptionsValidationException e)
        {
            throw new ArgumentException(string.Join(" ", e.Failures), e);
        }
    }

    /// <summary>Reads standard input to its end (what a dead parent's pipe gives), then cancels <paramref name="stop"/>.</summary>
    internal static async Task StopWhenInputClosesAsync(CancellationTokenSource stop)
    {
        var token = stop.Token;
        try
        {
            using var input = Console.OpenStandardInput();
            var buffer = new byte[256];
            while (await input.ReadAsync(buffer, token).ConfigureAwait(false) > 0)
            {
                // What the parent writes means nothing; only the end of the input does.
            }

            await stop.CancelAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or IOException)
        {
            // Stopped another way first, or no readable input: nothing to watch.
        }
    }

    private static TimeSpan Seconds(double value, string option) =>
        value > 0 && double.IsFinite(value) && value <= TimeSpan.MaxValue.TotalSeconds
            ? TimeSpan.FromSeconds(value)
            : throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{option} must be a positive number of seconds, not {value}."));

    /// <summary>The option of a <see cref="ServerAnnouncerOptions"/> property, e.g. <c>PublicName</c> → <c>public-name</c>.</summary>
    private static string Kebab(string? property) =>
        string.Concat((property ?? "announce").Select((c, i) => char.IsUpper(c) ? (i > 0 ? "-" : string.Empty) + char.ToLowerInvariant(c) : c.ToString()));

    /// <summary>The placement flags: <c>--blocks</c> excludes the others; budgets and periods checked here, with the flag named.</summary>
    internal static (int? NumBlocks, long? MemoryBudget, BlockBalancingOptions Balancing) ParsePlacement(BlockRange? blocks, int? numBlocks, string? memoryBudget, double period, double quality)
    {
        if (blocks is not null && (numBlocks is not null || memoryBudget is not null))
        {
            throw new ArgumentException($"--blocks places the server by hand; --{(numBlocks is not null ? "num-blocks" : "memory-budget")} sizes a span the swarm places: give one or the other.");
        }

        if (numBlocks is < 1)
        {
            throw new ArgumentException($"--num-blocks must be at least 1, not {numBlocks}.");
        }

        long? budget = null;
        if (memoryBudget is not null)
        {
            if (numBlocks is not null)
            {
                throw new ArgumentException("--num-blocks fixes the number of blocks; --memory-budget would choose it: give one or the other.");
            }

            try
            {
                budget = BlockMemoryEstimate.ParseBytes(memoryBudget);
            }
            catch (FormatException e)
            {
                throw new ArgumentException($"--memory-budget: {e.Message}", e);
            }
        }

        if (!double.IsFinite(quality) || quality <= 0 || quality > 10)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--balance-quality must be in (0, 10] (0.75 by default), not {quality}."));
        }

        var balancing = new BlockBalancingOptions
        {
            BalancePeriod = period == 0 ? Timeout.InfiniteTimeSpan : Seconds(period, "--balance-period"),
            BalanceQuality = quality,
        };
        return (numBlocks, budget, balancing);
    }

    /// <summary>The <c>--throughput</c> and <c>--throughput-cache</c> values as meter options.</summary>
    /// <exception cref="ArgumentException">The value is neither a positive number nor <c>eval</c>; the message names the flag.</exception>
    internal static ThroughputMeterOptions ParseThroughput(string? value, string? cachePath, int? threads, double bandwidthMbps = 100)
    {
        if (!double.IsFinite(bandwidthMbps) || bandwidthMbps < 0)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--network-bandwidth must be a non-negative number of Mbit/s (0: compute only), not {bandwidthMbps}."));
        }

        var options = new ThroughputMeterOptions
        {
            CachePath = cachePath,
            NetworkBandwidthMbps = bandwidthMbps > 0 ? bandwidthMbps : null,

            // Part of the cache key: a figure measured under another bandwidth is not reused.
            ExecutorSettings = string.Create(CultureInfo.InvariantCulture, $"threads={threads?.ToString(CultureInfo.InvariantCulture) ?? "default"};net={bandwidthMbps:0.###}"),
        };
        if (value is null)
        {
            return options;
        }

        if (string.Equals(value, "eval", StringComparison.OrdinalIgnoreCase))
        {
            options.ForceMeasure = true;
        }
        else if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var given) && given > 0 && double.IsFinite(given))
        {
            options.Given = given;
        }
        else
        {
            throw new ArgumentException($"--throughput must be a positive number of tokens/s per block or 'eval', not '{value}'.");
        }

        return options;
    }

    private static void WriteStatistics(System.Text.Json.Utf8JsonWriter w, BlockServerStatistics stats, double readyMs, long spanBytes, long modelBytes, ServerAnnouncerStatistics? announced, double throughput, string quantization)
    {
        using var self = Process.GetCurrentProcess();
        w.WriteStartObject();
        w.WriteNumber("ready_ms", Math.Round(readyMs, 1));
        w.WriteNumber("peak_memory_mb", Math.Round(self.PeakWorkingSet64 / 1048576.0, 1));
        w.WriteNumber("span_weights_mb", Math.Round(spanBytes / 1048576.0, 1));
        w.WriteNumber("model_weights_mb", Math.Round(modelBytes / 1048576.0, 1));
        w.WriteNumber("connections", stats.ConnectionsAccepted);
        w.WriteNumber("sessions", stats.SessionsOpened);
        w.WriteNumber("steps", stats.InferenceSteps);
        w.WriteNumber("forwards", stats.ForwardCalls);
        w.WriteNumber("tokens", stats.TokensProcessed);
        w.WriteNumber("bytes_sent", stats.BytesSent);
        w.WriteNumber("bytes_received", stats.BytesReceived);
        w.WriteNumber("compute_ms", Math.Round(stats.ComputeTime.TotalMilliseconds, 3));
        w.WriteNumber("cache_tokens", stats.CacheTokens);
        w.WriteNumber("cache_tokens_left", stats.CacheTokensLeft);
        w.WriteNumber("peak_cache_tokens", stats.PeakCacheTokens);
        w.WriteNumber("cache_refused_over_share", stats.CacheRefusedOverShare);
        w.WriteNumber("cache_refused_timed_out", stats.CacheRefusedTimedOut);
        w.WriteNumber("non_finite_refused", stats.NonFiniteInputsRefused);
        w.WriteNumber("connections_refused", stats.ConnectionsRefused);
        w.WriteNumber("handshake_timeouts", stats.HandshakeTimeouts);
        w.WriteNumber("idle_connections_closed", stats.IdleConnectionsClosed);
        w.WriteNumber("slow_connections_closed", stats.SlowConnectionsClosed);
        w.WriteNumber("peak_reassembly_bytes", stats.PeakReassemblyBytes);
        w.WriteNumber("reassembly_refusals", stats.ReassemblyRefusals);
        w.WriteNumber("announcements", announced?.Announcements ?? 0);
        w.WriteNumber("announce_failures", announced?.Failures ?? 0);
        w.WriteNumber("throughput", Math.Round(throughput, 1));
        w.WriteString("quantization", quantization);
        w.WriteEndObject();
    }
}
