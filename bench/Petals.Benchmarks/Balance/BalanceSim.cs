using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Balancing;
using Petals.Models;

namespace Petals.Benchmarks.Balance;

/// <summary>One server of a simulated swarm: when it joins and crashes, its throughput and span length.</summary>
internal sealed record SimServer(int Id, double JoinAt, double LeaveAt, double Throughput, int Length);

/// <summary>The servers online at one moment of a run and where each sits.</summary>
internal sealed record SimSnapshot(double Time, SimServer[] Servers, int[] Starts);

/// <summary>What one replay of the churn did: its snapshots and how many moves the servers made.</summary>
internal sealed record SimRun(SimSnapshot[] Snapshots, int Moves, int Evaluations, double ServerHours);

/// <summary>One sampled state: the swarm throughput with and without rebalancing against the optimum of the same servers.</summary>
internal sealed record StateResult(double Time, int Servers, double Throughput, double ThroughputNoRebalance, OptimumResult Optimum)
{
    /// <summary>Throughput over the proven upper bound of the optimum (1 when no placement covers every block: nobody does better than 0).</summary>
    public double Ratio => Of(Throughput, Optimum.UpperBound);

    public double RatioNoRebalance => Of(ThroughputNoRebalance, Optimum.UpperBound);

    /// <summary>Throughput over the best placement found (at least <see cref="Ratio"/>).</summary>
    public double RatioFound => Of(Throughput, Math.Max(Optimum.Found, Throughput));

    private static double Of(double value, double optimum) => optimum <= 1e-9 ? 1 : Math.Min(1, value / optimum);
}

/// <summary>The figures of one swarm.</summary>
internal sealed record SwarmResult(int Index, int Slots, int Blocks, StateResult[] States, SimRun Rebalanced, SimRun Static, int Joins)
{
    public double Ratio => States.Average(s => s.Ratio);

    public double MinRatio => States.Min(s => s.Ratio);

    public double RatioNoRebalance => States.Average(s => s.RatioNoRebalance);

    public double MovesPerServerHour => Rebalanced.ServerHours > 0 ? Rebalanced.Moves / Rebalanced.ServerHours : 0;

    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteNumber("swarm", Index);
            w.WriteNumber("servers", Slots);
            w.WriteNumber("blocks", Blocks);
            w.WriteNumber("mean_online", Math.Round(States.Average(s => s.Servers), 2));
            w.WriteNumber("states", States.Length);
            w.WriteNumber("ratio", Math.Round(Ratio, 4));
            w.WriteNumber("min_ratio", Math.Round(MinRatio, 4));
            w.WriteNumber("ratio_found", Math.Round(States.Average(s => s.RatioFound), 4));
            w.WriteNumber("ratio_no_rebalance", Math.Round(RatioNoRebalance, 4));
            w.WriteNumber("min_ratio_no_rebalance", Math.Round(States.Min(s => s.RatioNoRebalance), 4));
            w.WriteNumber("proven", States.Count(s => s.Optimum.Proven));
            w.WriteNumber("joins", Joins);
            w.WriteNumber("moves", Rebalanced.Moves);
            w.WriteNumber("evaluations", Rebalanced.Evaluations);
            w.WriteNumber("server_hours", Math.Round(Rebalanced.ServerHours, 2));
            w.WriteNumber("moves_per_server_hour", Math.Round(MovesPerServerHour, 4));
            w.WriteNumber("solve_s", Math.Round(States.Sum(s => s.Optimum.Seconds), 2));
            w.WriteStartArray("throughput");
            foreach (var s in States)
            {
                w.WriteStartObject();
                w.WriteNumber("t_h", Math.Round(s.Time / 3600, 3));
                w.WriteNumber("online", s.Servers);
                w.WriteNumber("greedy", Math.Round(s.Throughput, 3));
                w.WriteNumber("no_rebalance", Math.Round(s.ThroughputNoRebalance, 3));
                w.WriteNumber("found", Math.Round(s.Optimum.Found, 3));
                w.WriteNumber("upper", Math.Round(s.Optimum.UpperBound, 3));
                w.WriteNumber("volume", Math.Round(s.Optimum.VolumeBound, 3));
                w.WriteBoolean("proven", s.Optimum.Proven);
                w.WriteBoolean("cp_sat", s.Optimum.SolverRan);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }
}

/// <summary>
/// <c>balance-sim</c>: random swarms of heterogeneous servers with churn, each server running the real
/// <see cref="GreedyBlockBalancer"/> over a simulated DHT view (the <see cref="SwarmLoad"/> of the servers online at
/// that moment, joining ones included), measured against the exact optimum of the same servers and span lengths
/// (<see cref="OptimumSolver"/>).
/// </summary>
/// <remarks>
/// <para>Scenario per swarm (all from one seed): B blocks uniform in [MinBlocks, MaxBlocks]; N server slots uniform in
/// [MinServers, MaxServers]. A server's throughput is log-uniform in [1, 20] (relative units; --max-throughput); its
/// memory is log-uniform between 1/8 and 1/2 of the model's bytes (--min-span-share, --max-span-share) (for Llama-2-70B in bf16: 17.5 to 70 GB, a 24 GB card to an
/// 80 GB one less its cache), so its span is floor(memory / block bytes) = floor(f * B) blocks, at least 1.
/// Every slot's first server joins at a uniform time in the first minute (starting together, one after another in
/// the view, each counting the joining ones); it crashes after an exponential lifetime (mean LifetimeMinutes), and
/// the slot gets a new random server after an exponential downtime (mean DowntimeMinutes): joins and crashes are
/// Poisson. A joining server takes <see cref="IBlockBalancer.ChooseSpan"/> of the view; every online server calls
/// <see cref="IBlockBalancer.Evaluate"/> after waits uniform in [0, 2 x period] and moves when told (a move is
/// instantaneous in the view). The DHT view is exact and current.</para>
/// <para>The same churn is replayed with rebalancing off (join-time choice only): same servers at the same times,
/// so the same optimum serves both.</para>
/// </remarks>
internal static class BalanceSim
{
    /// <summary>Runs every swarm; writes one line per swarm and a summary to <paramref name="output"/>.</summary>
    public static int Run(BalanceSimOptions options, TextWriter output, TextWriter? progress)
    {
        var results = new List<SwarmResult>(options.Swarms);
        for (var i = 0; i < options.Swarms; i++)
        {
            var swarm = RunSwarm(options, i);
            results.Add(swarm);
            output.WriteLine(options.Json ? swarm.ToJson() : string.Create(CultureInfo.InvariantCulture,
                $"swarm {i,3}: {swarm.Slots,2} servers, {swarm.Blocks,2} blocks: ratio {swarm.Ratio:0.000} (min {swarm.MinRatio:0.000}), no rebalancing {swarm.RatioNoRebalance:0.000}, proven {swarm.States.Count(s => s.Optimum.Proven)}/{swarm.States.Length}, {swarm.MovesPerServerHour:0.00} moves/server/h"));
            progress?.Flush();
        }

        var summary = Summary(options, results);
        output.WriteLine(options.Json ? summary : Text(results));
        if (options.Plot is not null)
        {
            var plot = BalancePlot.Write(options, options.Plot);
            progress?.WriteLine(plot);
        }

        return 0;
    }

    /// <summary>The JSON summary line.</summary>
    public static string Summary(BalanceSimOptions options, IReadOnlyList<SwarmResult> results)
    {
        var states = results.SelectMany(r => r.States).ToArray();
        var moves = results.Sum(r => r.Rebalanced.Moves);
        var hours = results.Sum(r => r.Rebalanced.ServerHours);
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteNumber("swarms", results.Count);
            w.WriteNumber("mean_ratio", Math.Round(results.Average(r => r.Ratio), 4));
            w.WriteNumber("worst_ratio", Math.Round(states.Min(s => s.Ratio), 4));
            w.WriteNumber("worst_swarm_ratio", Math.Round(results.Min(r => r.Ratio), 4));
            w.WriteNumber("mean_ratio_found", Math.Round(states.Average(s => s.RatioFound), 4));
            w.WriteNumber("mean_ratio_no_rebalance", Math.Round(results.Average(r => r.RatioNoRebalance), 4));
            w.WriteNumber("worst_ratio_no_rebalance", Math.Round(states.Min(s => s.RatioNoRebalance), 4));
            w.WriteNumber("states", states.Length);
            w.WriteNumber("proven_share", Math.Round((double)states.Count(s => s.Optimum.Proven) / states.Length, 4));
            w.WriteNumber("moves", moves);
            w.WriteNumber("server_hours", Math.Round(hours, 1));
            w.WriteNumber("moves_per_server_hour", Math.Round(hours > 0 ? moves / hours : 0, 4));
            w.WriteNumber("seed", options.Seed);
            w.WriteNumber("hours", options.Hours);
            w.WriteNumber("solve_seconds", options.SolveSeconds);
            w.WriteNumber("solve_s", Math.Round(states.Sum(s => s.Optimum.Seconds), 1));
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string Text(IReadOnlyList<SwarmResult> results)
    {
        var states = results.SelectMany(r => r.States).ToArray();
        var moves = results.Sum(r => r.Rebalanced.Moves);
        var hours = results.Sum(r => r.Rebalanced.ServerHours);
        return string.Create(CultureInfo.InvariantCulture, $"""
            {results.Count} swarms, {states.Length} states ({states.Count(s => s.Optimum.Proven)} with the optimum proven; ratios are against the proven upper bound)
              with rebalancing:    mean ratio {results.Average(r => r.Ratio):0.0000}, worst state {states.Min(s => s.Ratio):0.0000}, worst swarm {results.Min(r => r.Ratio):0.0000}; {moves} moves in {hours:0} server-hours = {(hours > 0 ? moves / hours : 0):0.000} moves per server per hour
              without (join only): mean ratio {results.Average(r => r.RatioNoRebalance):0.0000}, worst state {states.Min(s => s.RatioNoRebalance):0.0000}
            """);
    }

    /// <summary>One swarm: its churn, both replays and the optimum at each sampled state.</summary>
    public static SwarmResult RunSwarm(BalanceSimOptions options, int index)
    {
        var (blocks, slots, servers) = Scenario(options, index);
        var times = Enumerable.Range(1, options.States).Select(k => options.Hours * 3600 * k / options.States).ToArray();
        var rebalanced = Replay(options, index, blocks, servers, times, rebalance: true);
        var fixedRun = Replay(options, index, blocks, servers, times, rebalance: false);
        var states = new StateResult[times.Length];
        for (var k = 0; k < times.Length; k++)
        {
            states[k] = Measure(options, blocks, rebalanced.Snapshots[k], fixedRun.Snapshots[k], SeedOf(options.Seed, index, 1000 + k));
        }

        return new SwarmResult(index, slots, blocks, states, rebalanced, fixedRun, servers.Length);
    }

    /// <summary>The optimum of one state, hinted with the better of the two runs' placements.</summary>
    public static StateResult Measure(BalanceSimOptions options, int blocks, SimSnapshot withMoves, SimSnapshot without, int seed)
    {
        var lengths = withMoves.Servers.Select(s => s.Length).ToArray();
        var speeds = withMoves.Servers.Select(s => s.Throughput).ToArray();
        var greedy = OptimumSolver.Value(blocks, lengths, speeds, withMoves.Starts);
        var plain = OptimumSolver.Value(blocks, lengths, speeds, without.Starts);
        var optimum = lengths.Length == 0
            ? new OptimumResult([], 0, 0, true, 0, 0)
            : OptimumSolver.Solve(blocks, lengths, speeds, greedy >= plain ? withMoves.Starts : without.Starts, options.SolveSeconds, seed);
        return new StateResult(withMoves.Time, lengths.Length, greedy, plain, optimum);
    }

    /// <summary>The random swarm: its block count, slot count and every server of its churn.</summary>
    public static (int Blocks, int Slots, SimServer[] Servers) Scenario(BalanceSimOptions options, int index)
    {
        var random = new Random(SeedOf(options.Seed, index, 0));
        var blocks = random.Next(options.MinBlocks, options.MaxBlocks + 1);
        var slots = random.Next(options.MinServers, options.MaxServers + 1);
        var end = options.Hours * 3600;
        var servers = new List<SimServer>();
        for (var slot = 0; slot < slots; slot++)
        {
            var t = random.NextDouble() * 60;
            while (t < end)
            {
                var life = Exponential(random, options.LifetimeMinutes * 60);
                var throughput = Math.Exp(random.NextDouble() * Math.Log(options.MaxThroughput));
                var fraction = Math.Exp(Math.Log(options.MinSpanShare) + (random.NextDouble() * Math.Log(options.MaxSpanShare / options.MinSpanShare)));
                var length = Math.Clamp((int)Math.Floor(fraction * blocks), 1, blocks);
                servers.Add(new SimServer(servers.Count, t, t + life, throughput, length));
                t += life + Exponential(random, options.DowntimeMinutes * 60);
            }
        }

        servers.Sort((a, b) => a.JoinAt.CompareTo(b.JoinAt));
        return (blocks, slots, [.. servers.Select((s, i) => s with { Id = i })]);
    }

    /// <summary>Replays the churn with the real balancer; snapshots at <paramref name="times"/> (ascending).</summary>
    public static SimRun Replay(BalanceSimOptions options, int index, int blocks, SimServer[] servers, double[] times, bool rebalance)
    {
        var balancer = new GreedyBlockBalancer(new Random(SeedOf(options.Seed, index, rebalance ? 1 : 2)));
        var jitter = new Random(SeedOf(options.Seed, index, 3));
        var end = options.Hours * 3600;
        var events = new PriorityQueue<(int Kind, int Server), (double, long)>();
        long sequence = 0;
        foreach (var s in servers)
        {
            events.Enqueue((0, s.Id), (s.JoinAt, sequence++));
            events.Enqueue((1, s.Id), (s.LeaveAt, sequence++));
        }

        var online = new SortedDictionary<int, BlockRange>();
        var snapshots = new SimSnapshot[times.Length];
        var next = 0;
        var moves = 0;
        var evaluations = 0;
        while (next < times.Length)
        {
            if (events.TryPeek(out var ev, out var key) && key.Item1 < times[next])
            {
                events.Dequeue();
                var server = servers[ev.Server];
                switch (ev.Kind)
                {
                    case 0:
                        online[server.Id] = balancer.ChooseSpan(View(blocks, servers, online), server.Length);
                        if (rebalance)
                        {
                            events.Enqueue((2, server.Id), (key.Item1 + (jitter.NextDouble() * 2 * options.PeriodSeconds), sequence++));
                        }

                        break;
                    case 1:
                        online.Remove(server.Id);
                        break;
                    default:
                        if (!online.ContainsKey(server.Id))
                        {
                            break;
                        }

                        evaluations++;
                        var decision = balancer.Evaluate(View(blocks, servers, online), Name(server.Id), options.Quality);
                        if (decision.Move)
                        {
                            online[server.Id] = decision.Target;
                            moves++;
                        }

                        events.Enqueue((2, server.Id), (key.Item1 + (jitter.NextDouble() * 2 * options.PeriodSeconds), sequence++));
                        break;
                }

                continue;
            }

            var ids = online.Keys.ToArray();
            snapshots[next] = new SimSnapshot(times[next], [.. ids.Select(id => servers[id])], [.. ids.Select(id => online[id].Start)]);
            next++;
        }

        var serverHours = 0.0;
        foreach (var s in servers)
        {
            serverHours += Math.Max(0, Math.Min(s.LeaveAt, Math.Min(end, times[^1])) - s.JoinAt) / 3600;
        }

        return new SimRun(snapshots, moves, evaluations, serverHours);
    }

    private static SwarmLoad View(int blocks, SimServer[] servers, SortedDictionary<int, BlockRange> online) =>
        new(blocks, online.Select(p => new ServerLoad(Name(p.Key), p.Value, servers[p.Key].Throughput)));

    private static string Name(int id) => string.Create(CultureInfo.InvariantCulture, $"s{id}");

    private static double Exponential(Random random, double mean) => -mean * Math.Log(1 - random.NextDouble());

    /// <summary>A seed per (run seed, swarm, stream): the streams of one swarm are independent of each other and of other swarms.</summary>
    internal static int SeedOf(int seed, int swarm, int stream) =>
        (int)((((ulong)(uint)seed * 0x9E3779B97F4A7C15UL) ^ ((ulong)(uint)swarm * 0xC2B2AE3D27D4EB4FUL) ^ ((ulong)(uint)stream * 0x165667B19E3779F9UL)) >> 33);
}
