using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Discovery;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Benchmarks;

/// <summary>How nodes join the simulated network.</summary>
internal enum DhtSimJoin
{
    /// <summary>Kademlia's full join: ping the bootstrap node, look up the own id, refresh every bucket from the nearest non-empty one up.</summary>
    Full,

    /// <summary>Ping the bootstrap node and look up the own id only (<see cref="DhtNodeOptions.RefreshBucketsOnJoin"/> off).</summary>
    SelfLookup,
}

/// <summary>The settings of <c>dht-sim</c>.</summary>
internal sealed record DhtSimOptions
{
    public int Nodes { get; init; } = 100;

    /// <summary>One-way latency added to every message during the store and lookup phases (0 = none).</summary>
    public double LatencyMs { get; init; } = 25;

    public int Lookups { get; init; } = 500;

    public int Records { get; init; } = 100;

    public int Seed { get; init; } = 1;

    /// <summary>Null: <see cref="DhtSimJoin.Full"/> up to 2,000 nodes, <see cref="DhtSimJoin.SelfLookup"/> beyond.</summary>
    public DhtSimJoin? Join { get; init; }

    /// <summary>How many nodes join at once (each through a random node that already joined).</summary>
    public int JoinParallelism { get; init; } = 8;

    /// <summary>Whether the joins run with the latency on too (slow for large networks).</summary>
    public bool JoinWithLatency { get; init; }

    /// <summary>How many lookups run at once in the measured phase.</summary>
    public int Concurrency { get; init; } = 4;

    public bool Json { get; init; }

    public DhtSimJoin EffectiveJoin => Join ?? (Nodes <= 2000 ? DhtSimJoin.Full : DhtSimJoin.SelfLookup);

    public static DhtSimOptions Parse(ReadOnlySpan<string> args)
    {
        var o = new DhtSimOptions();
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (name == "--join-with-latency")
            {
                o = o with { JoinWithLatency = true };
                continue;
            }

            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"{name} needs a value.");
            }

            var value = args[++i];
            o = name switch
            {
                "--nodes" => o with { Nodes = OptionValues.Int(name, value, 2) },
                "--latency-ms" => o with { LatencyMs = OptionValues.NonNegative(name, value, "milliseconds") },
                "--lookups" => o with { Lookups = OptionValues.Int(name, value, 1) },
                "--records" => o with { Records = OptionValues.Int(name, value, 1) },
                "--seed" => o with { Seed = OptionValues.Int(name, value, 0) },
                "--join" => o with
                {
                    Join = value switch
                    {
                        "full" => DhtSimJoin.Full,
                        "self" => DhtSimJoin.SelfLookup,
                        _ => throw new ArgumentException($"--join must be 'full' or 'self', not '{value}'."),
                    },
                },
                "--join-parallelism" => o with { JoinParallelism = OptionValues.Int(name, value, 1) },
                "--concurrency" => o with { Concurrency = OptionValues.Int(name, value, 1) },
                "--output" => value is "json" or "text" ? o with { Json = value == "json" } : throw new ArgumentException($"--output must be 'text' or 'json', not '{value}'."),
                _ => throw new ArgumentException($"Unknown dht-sim option '{name}'."),
            };
        }

        return o;
    }
}

/// <summary>Median, p99 and max of a sample.</summary>
internal sealed record DhtSimStats(double Median, double P99, double Max, double Mean)
{
    public static DhtSimStats Of(IReadOnlyCollection<double> values)
    {
        if (values.Count == 0)
        {
            return new DhtSimStats(double.NaN, double.NaN, double.NaN, double.NaN);
        }

        var sorted = values.Order().ToArray();
        return new DhtSimStats(Percentile(sorted, 0.5), Percentile(sorted, 0.99), sorted[^1], sorted.Average());
    }

    /// <summary>The nearest-rank percentile of a sorted sample.</summary>
    public static double Percentile(double[] sorted, double p)
    {
        var rank = (int)Math.Ceiling(p * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}

/// <summary>What one kind of lookup measured.</summary>
internal sealed record DhtSimLookups(int Count, int Succeeded, DhtSimStats LatencyMs, DhtSimStats Hops, double MeanMessages)
{
    public double SuccessRate => Count == 0 ? double.NaN : (double)Succeeded / Count;
}

/// <summary>The outcome of one simulation.</summary>
internal sealed record DhtSimResult(
    DhtSimOptions Options,
    string JoinMode,
    double JoinSeconds,
    double MeanRoutingTableSize,
    int StoredRecords,
    double MeanReplicas,
    DhtSimLookups Get,
    DhtSimLookups FindNode,
    DhtSimLookups All,
    double LookupPhaseSeconds,
    double TotalSeconds,
    long PeakRssBytes)
{
    public string ToJson() => JsonSerializer.Serialize(new
    {
        nodes = Options.Nodes,
        latency_ms_one_way = Options.LatencyMs,
        seed = Options.Seed,
        join = JoinMode,
        join_parallelism = Options.JoinParallelism,
        join_with_latency = Options.JoinWithLatency,
        join_s = Math.Round(JoinSeconds, 2),
        mean_routing_table = Math.Round(MeanRoutingTableSize, 1),
        records = StoredRecords,
        mean_replicas = Math.Round(MeanReplicas, 2),
        concurrency = Options.Concurrency,
        lookups = All.Count,
        success_rate = Math.Round(All.SuccessRate, 4),
        latency_ms_median = Math.Round(All.LatencyMs.Median, 1),
        latency_ms_p99 = Math.Round(All.LatencyMs.P99, 1),
        hops_median = All.Hops.Median,
        hops_p99 = All.Hops.P99,
        hops_max = All.Hops.Max,
        messages_mean = Math.Round(All.MeanMessages, 1),
        get = Part(Get),
        find_node = Part(FindNode),
        lookup_phase_s = Math.Round(LookupPhaseSeconds, 2),
        total_s = Math.Round(TotalSeconds, 2),
        peak_rss_mib = PeakRssBytes / (1024 * 1024),
    });

    public string ToText()
    {
        var s = new StringBuilder();
        s.AppendLine(CultureInfo.InvariantCulture, $"dht-sim: {Options.Nodes} nodes, one-way latency {Options.LatencyMs} ms, seed {Options.Seed}, k = 20, alpha = 3");
        s.AppendLine(CultureInfo.InvariantCulture, $"join: {JoinMode}, {Options.JoinParallelism} at a time, latency {(Options.JoinWithLatency ? "on" : "off")}: {JoinSeconds:F1} s; mean routing table {MeanRoutingTableSize:F1} contacts");
        s.AppendLine(CultureInfo.InvariantCulture, $"stored {StoredRecords} records, {MeanReplicas:F1} replicas each on average");
        s.AppendLine(CultureInfo.InvariantCulture, $"{"lookups",-10} {"count",6} {"success",8} {"lat med",9} {"lat p99",9} {"hops med",9} {"hops p99",9} {"hops max",9} {"msgs",6}");
        foreach (var (name, part) in new[] { ("get", Get), ("find-node", FindNode), ("all", All) })
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"{name,-10} {part.Count,6} {part.SuccessRate,8:P1} {part.LatencyMs.Median,9:F1} {part.LatencyMs.P99,9:F1} {part.Hops.Median,9} {part.Hops.P99,9} {part.Hops.Max,9} {part.MeanMessages,6:F1}");
        }

        s.Append(CultureInfo.InvariantCulture, $"lookup phase {LookupPhaseSeconds:F1} s (concurrency {Options.Concurrency}), total {TotalSeconds:F1} s, peak RSS {PeakRssBytes / (1024 * 1024)} MiB");
        return s.ToString();
    }

    private static object Part(DhtSimLookups p) => new
    {
        count = p.Count,
        success_rate = Math.Round(p.SuccessRate, 4),
        latency_ms_median = Math.Round(p.LatencyMs.Median, 1),
        latency_ms_p99 = Math.Round(p.LatencyMs.P99, 1),
        hops_median = p.Hops.Median,
        hops_p99 = p.Hops.P99,
        hops_max = p.Hops.Max,
        messages_mean = Math.Round(p.MeanMessages, 1),
    };
}

/// <summary>
/// <c>dht-sim</c>: N <see cref="DhtNode"/>s in one process on a <see cref="MemoryTransport"/> behind the shaping
/// decorator (Petals.Testing) that adds one-way latency; each node joins through a random node that joined before it
/// (real Kademlia joins, <see cref="DhtSimJoin"/>), records are stored from random nodes, then lookups (GetAsync of
/// stored keys, FindNodeAsync of random ids) run from random nodes and are measured.
/// </summary>
internal static class DhtSim
{
    public static async Task<DhtSimResult> RunAsync(DhtSimOptions o, TextWriter? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(o);
        var total = Stopwatch.StartNew();
        var random = new Random(o.Seed);
        var shaping = new NetworkShapingOptions { RoundTripLatency = o.JoinWithLatency ? RoundTrip(o) : TimeSpan.Zero };
        var transport = new MemoryTransport().WithShaping(shaping);
        var join = o.EffectiveJoin;
        // No identity puzzle: solving it (~0.1 s per identity at the default difficulty) would dominate creating 10,000 nodes.
        var nodeOptions = DhtNodeOptions.Default with { RefreshBucketsOnJoin = join == DhtSimJoin.Full, PuzzleDifficulty = 0 };
        var nodes = new DhtNode[o.Nodes];
        try
        {
            progress?.WriteLine($"creating {o.Nodes} identities");
            for (var i = 0; i < nodes.Length; i++)
            {
                nodes[i] = new DhtNode(PeerIdentity.Generate(), nodeOptions);
            }

            // Joins: node 0 starts alone; then up to JoinParallelism nodes at a time each join through a random node
            // among those that finished joining.
            var joinClock = Stopwatch.StartNew();
            await nodes[0].StartAsync(transport, PeerAddress.Parse("mem://sim-0"), cancellationToken).ConfigureAwait(false);
            var joined = new List<DhtNode> { nodes[0] };
            var joinedGate = new Lock();
            var next = 1;
            var failedJoins = 0;
            var workers = Enumerable.Range(0, o.JoinParallelism).Select(async _ =>
            {
                while (true)
                {
                    var index = Interlocked.Increment(ref next) - 1;
                    if (index >= nodes.Length)
                    {
                        return;
                    }

                    var node = nodes[index];
                    await node.StartAsync(transport, PeerAddress.Parse(string.Create(CultureInfo.InvariantCulture, $"mem://sim-{index}")), cancellationToken).ConfigureAwait(false);
                    DhtNode via;
                    lock (joinedGate)
                    {
                        via = joined[random.Next(joined.Count)];
                    }

                    if (await node.BootstrapAsync([via.LocalAddress], cancellationToken).ConfigureAwait(false) != 1)
                    {
                        Interlocked.Increment(ref failedJoins);
                    }

                    lock (joinedGate)
                    {
                        joined.Add(node);
                        if (joined.Count % Math.Max(1, nodes.Length / 10) == 0)
                        {
                            progress?.WriteLine($"joined {joined.Count} of {nodes.Length} ({joinClock.Elapsed.TotalSeconds:F0} s)");
                        }
                    }
                }
            }).ToArray();
            await Task.WhenAll(workers).ConfigureAwait(false);
            var joinSeconds = joinClock.Elapsed.TotalSeconds;
            if (failedJoins > 0)
            {
                throw new InvalidOperationException($"{failedJoins} nodes could not reach their bootstrap node.");
            }

            shaping.RoundTripLatency = RoundTrip(o);
            var meanTable = nodes.Average(n => (double)n.Routing.Count);

            // Records: signed by random nodes, stored from them at the k closest.
            progress?.WriteLine($"storing {o.Records} records");
            var expires = DateTimeOffset.UtcNow.AddHours(1);
            var keys = new string[o.Records];
            var publishers = new DhtNode[o.Records];
            for (var i = 0; i < keys.Length; i++)
            {
                keys[i] = string.Create(CultureInfo.InvariantCulture, $"sim-model.{i}");
                publishers[i] = nodes[random.Next(nodes.Length)];
            }

            var replicas = new int[keys.Length];
            await ForEachAsync(keys.Length, o.Concurrency, async i =>
            {
                var record = DhtRecord.Create(publishers[i].Identity, keys[i], Encoding.UTF8.GetBytes(keys[i]), expires);
                replicas[i] = (await publishers[i].StoreAsync(record, cancellationToken).ConfigureAwait(false)).AcceptedCount;
            }).ConfigureAwait(false);

            // Lookups: alternately a get of a stored key and a find-node of a random id, each from a random node.
            var plan = Enumerable.Range(0, o.Lookups).Select(i => (From: nodes[random.Next(nodes.Length)], IsGet: i % 2 == 0, Key: keys[random.Next(keys.Length)], Target: NodeId.CreateRandom(random))).ToArray();
            var samples = new (bool IsGet, bool Ok, double Ms, int Hops, int Messages)[plan.Length];
            progress?.WriteLine($"running {o.Lookups} lookups");
            var phase = Stopwatch.StartNew();
            await ForEachAsync(plan.Length, o.Concurrency, async i =>
            {
                var (from, isGet, key, target) = plan[i];
                var clock = Stopwatch.StartNew();
                if (isGet)
                {
                    var result = await from.GetAsync(key, cancellationToken).ConfigureAwait(false);
                    var ms = clock.Elapsed.TotalMilliseconds;
                    var ok = result.Records.Any(r => r.Key == key && r.Value.Span.SequenceEqual(Encoding.UTF8.GetBytes(key)));
                    samples[i] = (true, ok, ms, result.Lookup.Hops, result.Lookup.MessagesSent);
                }
                else
                {
                    var result = await from.FindNodeAsync(target, cancellationToken).ConfigureAwait(false);
                    var ms = clock.Elapsed.TotalMilliseconds;

                    // Success: the nearest node found is the nearest node of the whole network (other than the asker).
                    var nearest = Nearest(nodes, target, from);
                    var ok = result.Closest.Count > 0 && result.Closest[0].Id == nearest;
                    samples[i] = (false, ok, ms, result.Hops, result.MessagesSent);
                }
            }).ConfigureAwait(false);
            var phaseSeconds = phase.Elapsed.TotalSeconds;

            var result = new DhtSimResult(
                o,
                join == DhtSimJoin.Full ? "full (ping, self lookup, refresh of every bucket)" : "self lookup (ping, self lookup)",
                joinSeconds,
                meanTable,
                keys.Length,
                replicas.Average(),
                Summarize(samples.Where(s => s.IsGet)),
                Summarize(samples.Where(s => !s.IsGet)),
                Summarize(samples),
                phaseSeconds,
                total.Elapsed.TotalSeconds,
                PeakRss());
            return result;
        }
        finally
        {
            progress?.WriteLine("stopping the nodes");
            shaping.RoundTripLatency = TimeSpan.Zero;
            await ForEachAsync(nodes.Length, 64, async i =>
            {
                if (nodes[i] is { } node)
                {
                    await node.DisposeAsync().ConfigureAwait(false);
                    node.Identity.Dispose();
                }
            }).ConfigureAwait(false);
        }
    }

    /// <summary>Peak resident set size of this process (VmHWM on Linux), or the peak working set elsewhere.</summary>
    public static long PeakRss()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                    return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        using var self = Process.GetCurrentProcess();
        return self.PeakWorkingSet64;
    }

    private static TimeSpan RoundTrip(DhtSimOptions o) => TimeSpan.FromMilliseconds(2 * o.LatencyMs);

    private static NodeId Nearest(DhtNode[] nodes, NodeId target, DhtNode except)
    {
        NodeId? best = null;
        foreach (var node in nodes)
        {
            if (node != except && (best is null || target.CompareDistance(node.Id, best.Value) < 0))
            {
                best = node.Id;
            }
        }

        return best!.Value;
    }

    private static DhtSimLookups Summarize(IEnumerable<(bool IsGet, bool Ok, double Ms, int Hops, int Messages)> samples)
    {
        var list = samples.ToList();
        return new DhtSimLookups(
            list.Count,
            list.Count(s => s.Ok),
            DhtSimStats.Of(list.ConvertAll(s => s.Ms)),
            DhtSimStats.Of(list.ConvertAll(s => (double)s.Hops)),
            list.Count == 0 ? double.NaN : list.Average(s => s.Messages));
    }

    private static async Task ForEachAsync(int count, int parallelism, Func<int, Task> body)
    {
        var next = -1;
        var workers = Enumerable.Range(0, Math.Min(parallelism, Math.Max(count, 1))).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                await body(i).ConfigureAwait(false);
            }
        });
        await Task.WhenAll(workers).ConfigureAwait(false);
    }
}
