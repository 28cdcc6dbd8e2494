using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Discovery;
using Petals.Execution;
using Petals.Models;
using Petals.Server;
using Petals.Tensors;
using Petals.Testing.Transport;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Benchmarks.Mux;

/// <summary>The settings of <c>mux</c>.</summary>
internal sealed record MuxBenchOptions
{
    public int Nodes { get; init; } = 24;

    public double LatencyMs { get; init; } = 25;

    public int Lookups { get; init; } = 40;

    public int Concurrency { get; init; } = 4;

    public int Sessions { get; init; } = 5;

    public int Steps { get; init; } = 10;

    public int Seed { get; init; } = 1;

    public string Stacks { get; init; } = "plain,tls,tls-mux";

    public bool Json { get; init; }

    public static MuxBenchOptions Parse(ReadOnlySpan<string> args)
    {
        var o = new MuxBenchOptions();
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"{name} needs a value.");
            }

            var value = args[++i];
            o = name switch
            {
                "--nodes" => o with { Nodes = OptionValues.Int(name, value, 2) },
                "--latency-ms" => o with { LatencyMs = double.Parse(value, CultureInfo.InvariantCulture) },
                "--lookups" => o with { Lookups = OptionValues.Int(name, value, 1) },
                "--concurrency" => o with { Concurrency = OptionValues.Int(name, value, 1) },
                "--sessions" => o with { Sessions = OptionValues.Int(name, value, 1) },
                "--steps" => o with { Steps = OptionValues.Int(name, value, 1) },
                "--seed" => o with { Seed = OptionValues.Int(name, value, 0) },
                "--stacks" => o with { Stacks = value },
                "--output" => value is "json" or "text" ? o with { Json = value == "json" } : throw new ArgumentException($"--output must be 'text' or 'json', not '{value}'."),
                _ => throw new ArgumentException($"Unknown mux option '{name}'."),
            };
        }

        return o;
    }
}

/// <summary>What one transport stack measured.</summary>
internal sealed record MuxStackResult(
    string Stack,
    int Lookups,
    int LookupsOk,
    double LookupMedianMs,
    double LookupP90Ms,
    double ConnectMedianMs,
    double FirstStepMedianMs,
    double StepMedianMs,
    double StepP90Ms,
    double FirstRpcMs,
    double RpcMedianMs,
    long PhysicalConnects);

/// <summary>
/// <c>mux</c>: the same DHT swarm and the same block server on three transport stacks, the network shaper (one-way
/// latency) at the bottom of each so that every handshake message pays it: <c>plain</c> = connect round trip + shaped
/// memory, one stream per connection, no TLS; <c>tls</c> = TLS 1.3 (SslStream) over that, one connection and one
/// handshake per stream; <c>tls-mux</c> = the multiplexing transport over <c>tls</c>, one connection per peer pair.
/// Measures DHT lookups (get of stored keys / find-node of random ids alternately, from random nodes) and a client's
/// connect, first decode step and steady decode steps against one <see cref="BlockServer"/> of a tiny random model.
/// </summary>
internal static class MuxBench
{
    private const string ModelId = "mux-bench-random-llama";

    public static async Task<int> RunAsync(MuxBenchOptions o, CancellationToken cancellationToken)
    {
        var results = new List<MuxStackResult>();
        foreach (var stack in o.Stacks.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (stack is not ("plain" or "tls" or "tls-mux"))
            {
                throw new ArgumentException($"--stacks takes plain, tls and tls-mux, not '{stack}'.");
            }

            Console.Error.WriteLine($"== {stack}");
            results.Add(await RunStackAsync(stack, o, cancellationToken).ConfigureAwait(false));
        }

        if (o.Json)
        {
            foreach (var r in results)
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    stack = r.Stack,
                    nodes = o.Nodes,
                    latency_ms_one_way = o.LatencyMs,
                    lookups = r.Lookups,
                    lookups_ok = r.LookupsOk,
                    lookup_ms_median = Math.Round(r.LookupMedianMs, 1),
                    lookup_ms_p90 = Math.Round(r.LookupP90Ms, 1),
                    connect_ms_median = Math.Round(r.ConnectMedianMs, 1),
                    first_step_ms_median = Math.Round(r.FirstStepMedianMs, 1),
                    step_ms_median = Math.Round(r.StepMedianMs, 1),
                    step_ms_p90 = Math.Round(r.StepP90Ms, 1),
                    first_rpc_ms = Math.Round(r.FirstRpcMs, 1),
                    rpc_ms_median = Math.Round(r.RpcMedianMs, 1),
                    physical_connects = r.PhysicalConnects,
                }));
            }
        }
        else
        {
            var s = new StringBuilder();
            s.AppendLine(CultureInfo.InvariantCulture, $"mux: {o.Nodes} DHT nodes, one-way latency {o.LatencyMs} ms (below TLS), {o.Lookups} lookups at concurrency {o.Concurrency}; {o.Sessions} client connects x {o.Steps} decode steps");
            s.AppendLine(CultureInfo.InvariantCulture, $"{"stack",-8} {"ok",7} {"lookup med",11} {"lookup p90",11} {"connect med",12} {"1st step med",13} {"step med",9} {"step p90",9} {"1st rpc",8} {"rpc med",8} {"connects",9}");
            foreach (var r in results)
            {
                s.AppendLine(CultureInfo.InvariantCulture, $"{r.Stack,-8} {r.LookupsOk,3}/{r.Lookups,-3} {r.LookupMedianMs,11:F1} {r.LookupP90Ms,11:F1} {r.ConnectMedianMs,12:F1} {r.FirstStepMedianMs,13:F1} {r.StepMedianMs,9:F1} {r.StepP90Ms,9:F1} {r.FirstRpcMs,8:F1} {r.RpcMedianMs,8:F1} {r.PhysicalConnects,9}");
            }

            var tls = results.Find(r => r.Stack == "tls");
            var mux = results.Find(r => r.Stack == "tls-mux");
            if (tls is not null && mux is not null)
            {
                s.AppendLine(CultureInfo.InvariantCulture, $"tls / tls-mux: lookup median {tls.LookupMedianMs / mux.LookupMedianMs:F2}x, p90 {tls.LookupP90Ms / mux.LookupP90Ms:F2}x; connect {tls.ConnectMedianMs / mux.ConnectMedianMs:F2}x; first step {tls.FirstStepMedianMs / mux.FirstStepMedianMs:F2}x; steady step {tls.StepMedianMs / mux.StepMedianMs:F2}x; rpc (stream per request) {tls.RpcMedianMs / mux.RpcMedianMs:F2}x");
            }

            Console.Write(s.ToString());
        }

        return 0;
    }

    private static async Task<MuxStackResult> RunStackAsync(string stack, MuxBenchOptions o, CancellationToken cancellationToken)
    {
        var shaping = new NetworkShapingOptions { RoundTripLatency = TimeSpan.Zero };
        var shaped = new MemoryTransport().WithShaping(shaping);
        var network = new ConnectRoundTripTransport(shaped, () => shaping.RoundTripLatency);
        var identities = new List<TlsPeerIdentity>();
        var muxes = new List<ITransport>();
        var connects = new CountingConnects(network);
        ITransport Stack()
        {
            if (stack == "plain")
            {
                return connects;
            }

            var identity = TlsPeerIdentity.Create();
            identities.Add(identity);
            var tls = new BenchTlsTransport(connects, identity);
            if (stack == "tls")
            {
                return tls;
            }

            var mux = tls.WithMultiplexing();
            muxes.Add(mux);
            return mux;
        }

        var random = new Random(o.Seed);
        var nodes = new DhtNode[o.Nodes];
        var peerIdentities = new List<PeerIdentity>();
        var lookupMs = new List<double>();
        var ok = 0;
        try
        {
            // The swarm joins without latency, then the latency goes on for the measured phases.
            for (var i = 0; i < nodes.Length; i++)
            {
                var identity = PeerIdentity.Generate();
                peerIdentities.Add(identity);
                nodes[i] = new DhtNode(identity);
                await nodes[i].StartAsync(Stack(), PeerAddress.Parse(string.Create(CultureInfo.InvariantCulture, $"mem://mux-{i}")), cancellationToken).ConfigureAwait(false);
                if (i > 0 && await nodes[i].BootstrapAsync([nodes[random.Next(i)].LocalAddress], cancellationToken).ConfigureAwait(false) != 1)
                {
                    throw new InvalidOperationException($"DHT node {i} could not join.");
                }
            }

            var keys = Enumerable.Range(0, 20).Select(i => string.Create(CultureInfo.InvariantCulture, $"mux-model.{i}")).ToArray();
            foreach (var key in keys)
            {
                var publisher = nodes[random.Next(nodes.Length)];
                await publisher.StoreAsync(DhtRecord.Create(publisher.Identity, key, Encoding.UTF8.GetBytes(key), DateTimeOffset.UtcNow.AddHours(1)), cancellationToken).ConfigureAwait(false);
            }

            shaping.RoundTripLatency = TimeSpan.FromMilliseconds(2 * o.LatencyMs);
            var plan = Enumerable.Range(0, o.Lookups).Select(i => (From: nodes[random.Next(nodes.Length)], IsGet: i % 2 == 0, Key: keys[random.Next(keys.Length)], Target: NodeId.CreateRandom(random))).ToArray();
            var gate = new Lock();
            var next = -1;
            await Task.WhenAll(Enumerable.Range(0, o.Concurrency).Select(async _ =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < plan.Length)
                {
                    var (from, isGet, key, target) = plan[i];
                    var clock = Stopwatch.StartNew();
                    bool success;
                    if (isGet)
                    {
                        var result = await from.GetAsync(key, cancellationToken).ConfigureAwait(false);
                        success = result.Records.Any(r => r.Key == key);
                    }
                    else
                    {
                        var result = await from.FindNodeAsync(target, cancellationToken).ConfigureAwait(false);
                        success = result.Closest.Count > 0;
                    }

                    var ms = clock.Elapsed.TotalMilliseconds;
                    lock (gate)
                    {
                        lookupMs.Add(ms);
                        ok += success ? 1 : 0;
                    }
                }
            })).ConfigureAwait(false);

            var rpc = await EchoRpcAsync(Stack(), Stack(), cancellationToken).ConfigureAwait(false);
            var (connect, first, steps) = await DecodeAsync(Stack(), Stack(), o, cancellationToken).ConfigureAwait(false);
            return new MuxStackResult(
                stack,
                lookupMs.Count,
                ok,
                Percentile(lookupMs, 0.5),
                Percentile(lookupMs, 0.9),
                Percentile(connect, 0.5),
                Percentile(first, 0.5),
                Percentile(steps, 0.5),
                Percentile(steps, 0.9),
                rpc[0],
                Percentile(rpc.GetRange(1, rpc.Count - 1), 0.5),
                connects.Count);
        }
        finally
        {
            shaping.RoundTripLatency = TimeSpan.Zero;
            foreach (var node in nodes)
            {
                if (node is not null)
                {
                    await node.DisposeAsync().ConfigureAwait(false);
                }
            }

            foreach (var mux in muxes)
            {
                await ((IAsyncDisposable)mux).DisposeAsync().ConfigureAwait(false);
            }

            foreach (var identity in peerIdentities)
            {
                identity.Dispose();
            }

            foreach (var identity in identities)
            {
                identity.Dispose();
            }
        }
    }

    /// <summary>
    /// Ten request/response exchanges, one stream each as the DHT makes them (connect, write 64 bytes, end writes, read
    /// the echo to its end), one after the other from one client to one echo server: the first opens the connection.
    /// </summary>
    private static async Task<List<double>> EchoRpcAsync(ITransport serverTransport, ITransport clientTransport, CancellationToken cancellationToken)
    {
        await using var listener = await serverTransport.ListenAsync(PeerAddress.Parse("mem://mux-echo"), cancellationToken).ConfigureAwait(false);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var server = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                ITransportStream s;
                try
                {
                    s = await listener.AcceptAsync(stop.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
                {
                    return;
                }

                _ = Task.Run(async () =>
                {
                    await using (s.ConfigureAwait(false))
                    {
                        var buffer = new byte[256];
                        int n;
                        while ((n = await s.ReadAsync(buffer, stop.Token).ConfigureAwait(false)) > 0)
                        {
                            await s.WriteAsync(buffer.AsMemory(0, n), stop.Token).ConfigureAwait(false);
                        }

                        await s.CompleteWritesAsync(stop.Token).ConfigureAwait(false);
                    }
                }, CancellationToken.None);
            }
        }, CancellationToken.None);
        var times = new List<double>();
        var request = new byte[64];
        var reply = new byte[256];
        for (var i = 0; i < 10; i++)
        {
            var clock = Stopwatch.StartNew();
            await using (var s = await clientTransport.ConnectAsync(listener.LocalAddress, cancellationToken).ConfigureAwait(false))
            {
                await s.WriteAsync(request, cancellationToken).ConfigureAwait(false);
                await s.CompleteWritesAsync(cancellationToken).ConfigureAwait(false);
                while (await s.ReadAsync(reply, cancellationToken).ConfigureAwait(false) > 0)
                {
                }
            }

            times.Add(clock.Elapsed.TotalMilliseconds);
            await Task.Delay(5 * TimeSpan.FromMilliseconds(10), cancellationToken).ConfigureAwait(false);
        }

        await stop.CancelAsync().ConfigureAwait(false);
        await listener.DisposeAsync().ConfigureAwait(false);
        await server.ConfigureAwait(false);
        return times;
    }

    /// <summary>A client connects to one block server <see cref="MuxBenchOptions.Sessions"/> times; each time it opens a session and decodes <see cref="MuxBenchOptions.Steps"/> tokens.</summary>
    private static async Task<(List<double> Connect, List<double> First, List<double> Steps)> DecodeAsync(ITransport serverTransport, ITransport clientTransport, MuxBenchOptions o, CancellationToken cancellationToken)
    {
        var config = new ModelConfig
        {
            HiddenSize = 256,
            IntermediateSize = 704,
            NumLayers = 1,
            NumHeads = 4,
            NumKeyValueHeads = 1,
            HeadDim = 64,
            VocabSize = 1000,
            RmsNormEps = 1e-5,
            MaxPositionEmbeddings = 4096,
            BosTokenId = 1,
            EosTokenIds = [2],
            TieWordEmbeddings = true,
        };
        using var weights = InMemoryBlockWeights.CreateRandom(config, TensorDType.F32, (ulong)o.Seed);
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 });
        using var executor = factory.Create(weights, new BlockRange(0, config.NumLayers));
        await using var server = new BlockServer(executor, new BlockServerOptions
        {
            Blocks = new BlockRange(0, config.NumLayers),
            ModelId = ModelId,
            PeerId = "mux-bench-server",
            MaxSessionLength = 256,
            CacheTokens = 64L * 256,
        });
        var listener = await serverTransport.ListenAsync(PeerAddress.Parse("mem://mux-block-server"), cancellationToken).ConfigureAwait(false);
        await server.StartAsync(listener, cancellationToken).ConfigureAwait(false);
        var connect = new List<double>();
        var first = new List<double>();
        var steps = new List<double>();
        var hidden = new float[config.HiddenSize];
        try
        {
            for (var s = 0; s < o.Sessions; s++)
            {
                var clock = Stopwatch.StartNew();
                await using var blocks = await RemoteTransformerBlocks.ConnectAsync(clientTransport, [listener.LocalAddress], config, ModelId, cancellationToken: cancellationToken).ConfigureAwait(false);
                await using var session = await blocks.OpenSessionAsync(1, 64, cancellationToken).ConfigureAwait(false);
                connect.Add(clock.Elapsed.TotalMilliseconds);
                for (var step = 0; step < o.Steps; step++)
                {
                    InMemoryBlockWeights.FillUniform(hidden, (ulong)(s * 1000 + step + 1), 0, 1);
                    clock.Restart();
                    await session.ForwardAsync(hidden, 1, cancellationToken).ConfigureAwait(false);
                    (step == 0 ? first : steps).Add(clock.Elapsed.TotalMilliseconds);
                }
            }
        }
        finally
        {
            await server.DisposeAsync().ConfigureAwait(false);
            await listener.DisposeAsync().ConfigureAwait(false);
        }

        return (connect, first, steps);
    }

    private static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToArray();
        return sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
    }

    /// <summary>Counts physical connects (below TLS and the multiplexer).</summary>
    private sealed class CountingConnects(ITransport inner) : DelegatingTransport(inner)
    {
        private long _count;

        public long Count => Interlocked.Read(ref _count);

        public override ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _count);
            return base.ConnectAsync(address, cancellationToken);
        }
    }
}
