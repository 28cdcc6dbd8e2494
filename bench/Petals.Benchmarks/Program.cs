using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Petals.Models;
using Petals.Tensors;

namespace Petals.Benchmarks;

internal static class Program
{
    private const string Usage = """
        Petals.Benchmarks: block-level benchmarks of the executors.

          block       --shape llama2-7b|llama3-8b|tiny --dtype f32|bf16
                      (--mode decode --position N | --mode prefill --tokens N | --cases decode:1024,decode:128,prefill:128)
                      [--threads 2 --warmup 2 --iterations 10 --seed S --kv-bytes 4 --output text|json
                       --backend cpu --native-blas auto|never|always]
              Times one decoder block of random weights; prints median/min ms, GB/s and GFLOP/s per case.
          crosscheck  --dir D [--threads 2 --backend cpu]
              Runs the block, prefill and decode steps of D/block.safetensors (written by
              bench/pytorch_block.py xc-write) and writes the outputs to D/ours.f32.
          membw       [--threads 2 --iterations 10]
              Measures the read bandwidth of this machine (sum of a 1 GiB array), the ceiling for decode.
          swarm-model  --out DIR [--hidden 2048 --layers 12 --seed 1]
              Writes a random fp32 Llama checkpoint (Hugging Face layout, vocab 32000) for the swarm benchmark.
          chat-reuse  [--model-dir /tmp/petals-chat-model-h1024-l4 --tokenizer ../shared/tokenizers/mistral --hidden 1024 --layers 4
                       --turns 5 --message-tokens 100 --max-output-tokens 32 --rounds 3 --threads 2]
              Time to first token of every turn of a chat through PetalsChatClient with server-side cache reuse and without
              (MaxCachedConversations 0), on a random Llama (written once to --model-dir) served over TCP in this process.
          swarm-client --model DIR --peers host:port,... [--prompt-tokens 16 --new-tokens 32 --threads 2 --rounds 2 --output text|json]
                       [--local-spans 1] (the local reference split into that many executors)
              Greedy generation with all blocks in this process and through the servers, alternating; prints
              decode steps/s of each, their ratio, whether the tokens are identical, and bytes per step message.
              bench/swarm.sh starts the servers and runs both.
          wire-codec  (--model M | --random-hidden 4096) [--servers 3 --prompt-tokens 8 | --prompt-ids 1,403,... --new-tokens 64 --codecs fp32,fp16,bf16,int8
                       --threads 1 --output text|json]
              Greedy generation through N block servers in this process (memory transport) once per wire codec: bytes per
              decode step per hop (client connections, both directions, framing included) and tokens agreeing with fp32
              position by position. --random-hidden 4096 writes a random 4096-wide model (N blocks) to a temp dir first.
          quant-fixtures --out DIR [--lib path/to/libggml-base.so]
              Writes ggml's reference quantize/dequantize outputs (LLamaSharp.Backend.Cpu's natives) for the
              BlockQuantization tests; bench/quant-fixtures.sh regenerates tests/Petals.Abstractions.Tests/TestData/quant.
          quant-accuracy [--dir /work/bench-models --shape llama2-7b --blocks 1 --threads 2]
              Relative error of block outputs (32-token prefill + 8 decode steps) of the F16/Q8_0/Q4_0/Q4_K_M files and of the
              F32 file quantized at load (int8, nf4, q8_0, q4_k), against the F32 file; bytes of weights per block.
          quant-memory --file F [--quant none|int8|nf4|q8_0|q4_k --blocks 4 --threads 2]
              Resident memory (anonymous + file-backed) an executor over the file's first blocks adds, per block, beside
              the bytes of weights it holds; one case per process (bench/quant-memory.sh runs them all).
          quant-speed [--rows 256 --columns 4096]
              Single-thread throughput of BlockQuantization.Quantize / Dequantize per type.
          dht-sim     --nodes N [--latency-ms 25 --lookups 500 --records 100 --seed 1 --join full|self
                       --join-parallelism 8 --join-with-latency --concurrency 4 --output text|json]
              N DHT nodes in this process on the in-memory transport with the given one-way latency, joined
              through random earlier nodes (real Kademlia joins; 'full' up to 2,000 nodes, 'self' beyond by
              default, latency off while joining unless --join-with-latency); stores records from random nodes,
              then measures lookups (get of stored keys, find-node of random ids) from random nodes: median and
              p99 latency, median/p99/max hops, mean messages per lookup, success rate, peak RSS.
              bench/dht-sim.sh runs 100, 1,000 and 10,000 nodes.
          balance-sim [--swarms 100 --seed 1 --min-servers 10 --max-servers 50 --min-blocks 32 --max-blocks 80 --hours 4
                       --max-throughput 20 --min-span-share 0.125 --max-span-share 0.5
                       --states 4 --lifetime-minutes 120 --downtime-minutes 15 --period 120 --quality 0.75 --solve-seconds 2
                       --output text|json --plot FILE.png --plot-swarm 0 --plot-points 48]
              Random swarms of heterogeneous servers (throughput log-uniform 1-20, memory 1/8-1/2 of the model) with
              Poisson joins and crashes, each server running the real GreedyBlockBalancer (join-time ChooseSpan, Evaluate
              every uniform 0..2x period) over the swarm's current view; at --states times per swarm the swarm throughput
              is compared with the optimum of the same servers (CP-SAT, exact up to its time limit: the ratio is against
              its proven upper bound). The same churn is replayed without rebalancing. JSON: a line per swarm and a summary.
              bench/balance-sim.sh runs the default scenario with the plot.
          chaos       --model M [--spans 0:3,0:2,2:5,1:4,3:5 --new-tokens 200 --kill-every 10 --max-kills 0 --seed 1
                       --threads 1 --announce-interval 1 --startup-timeout 120 --prompt TEXT --results DIR --json --cold
                       --verify-rate P]
              Starts `petals dht` and one `petals serve --initial-peers` process per span (any one may die), generates
              greedily through them from this process, and after every K tokens kills (SIGKILL) a server of the
              active chain, restarting it as a new process once the client has recovered (each new server runs a
              short warm-up session first unless --cold). Checks the output against
              local generation; prints each recovery (failed span, replacements, replayed tokens, detection->resume
              and kill->resume ms) with medians and 90th percentiles; JSON lines to DIR/chaos-STAMP.jsonl.
              bench/chaos.sh runs it on stories260K. Exit code 4 when the output differs, a kill went unrecovered or a server
              the run did not kill failed, or (--verify-rate P > 0: the client spot-checks outputs) an output check failed.
          fault-table [--blocks 8 --hidden 512 --stages 4 --replicas 2 --rtt-ms 10 --bandwidth-mbps 1000
                       --lengths 128,1024 --rates 0,1e-4,1e-3,1e-2 --strategies restarts,no-caching,alg1 --seed 1
                       --repetitions 3 --long-repetitions 1 --cap-s 120 --no-caching-cap-s 60 --threads 2 --jsonl FILE --output text|json]
              The Petals paper's fault-tolerance table (Table 1) on one machine: real block servers in this process on
              the in-memory transport shaped to the given RTT and bandwidth, every span on --replicas servers, announced
              in an in-memory DHT the client's sequence manager reads. Before each step each server of the client's
              active chain fails with probability p (its connections are aborted; it stays reachable). Generates greedily
              with caching with restarts, no caching and Algorithm 1; prints steps/s like the paper's table, Algorithm
              1's ratio to its failure-free rate and the details of every cell. A run stops at --cap-s
              (no caching: --no-caching-cap-s); a cell whose run stops there is not repeated.
              bench/fault-table.sh runs the full table.
          fault-table-report FILE.jsonl LOCAL_STEPS_PER_S [fault-table options of that run]
              Prints the table again from the JSON lines of a fault-table run (--jsonl).
          soak        [--model M --phases baseline,idle,slowloris,partial,hog,nan,dht-flood --phase-seconds 20 --report-every 3
                       --idle-connections 2000 --slowloris 100 --partial 16 --hog-sessions 8 --hog-step 5 --nan-per-second 20
                       --dht-records 20000 --dht-identities 4 --attacker-address 127.0.0.4 --hog-address 127.0.0.2 --nan-address 127.0.0.3
                       --probe-timeout 15 --serve-arg ARG (repeat) --dht-arg ARG (repeat) --results DIR --label soak]
              Starts `petals dht` and `petals serve` (all blocks) on 127.0.0.1 and runs hostile clients against them in
              phases (idle connections after the handshake, slowloris at 1 byte/s, 63.9 MiB of declared 64 MiB chunked
              messages, a greedy cache hog from its own address, NaN/Inf steps and forwards, a DHT record flood); every
              few seconds prints the server's and the DHT node's RSS and open fds and the outcome of a normal client's
              8-token generation. Always stops its processes. bench/soak.sh runs it. Exit code 4 when the server died.
          finite-check [--iterations 2000]
              The cost of the servers' NaN/Inf check (TensorPrimitives.IsFiniteAll) on a [1,1,4096] and a [1,128,4096]
              step, against decoding the same tensor from fp32 and fp16 wire bytes in the same run.
          mux         [--nodes 24 --latency-ms 25 --lookups 40 --concurrency 4 --sessions 5 --steps 10 --seed 1
                       --stacks plain,tls,tls-mux --output text|json]
              One DHT swarm and one block server (tiny random model) per transport stack, with the one-way latency
              applied below TLS (the shaper at the bottom, plus one round trip per connect for TCP's handshake):
              plain (no TLS), tls (TLS 1.3 per stream: one connection and handshake each) and tls-mux (the
              multiplexing transport over tls: one connection per peer pair). Prints median/p90 DHT lookup latency,
              a client's connect, first and steady decode step round trips, physical connects, and tls / tls-mux.
              bench/mux.sh runs it.
          verify      --model M [--rates 0.01,0.05,0.1,0.25,1 --fractions 0.1,0.5 --fraction-rates 0.1,1 --trials 200
                       --steps 32 --cost-tokens 64 --cost-rounds 3 --seed 1 --results DIR]
              Output verification (issue 12) over servers of M (5 blocks: stories260K) in this process: a liar (0:5,
              echoes its input on every step or a fraction f of them) and honest 0:2, 2:5, 0:3, 3:5. Per check rate p:
              P(liar caught within n steps) over seeded trials vs 1-(1-p*f)^n, and the cost on honest servers (ms per
              token against p=0, extra block passes per token, mismatches: must be 0). bench/verify.sh runs it.
          model-files [--dir /work/bench-models --shapes llama2-7b,llama3-8b --formats f32,f16,q8_0,q4_0,q4_k_m --blocks 4
                       --std 0.02 --seed 1 --threads 2 --force]
              Writes random Llama GGUF files of real shapes (llama2-7b: 4096/11008, 32 heads, 32 KV heads; llama3-8b:
              4096/14336, 32 heads, 8 KV heads, rope theta 500000) with a 259-token vocabulary: F32 here, the other
              formats by llama.cpp's llama_model_quantize (LLamaSharp.Backend.Cpu natives). Existing files are kept.
          llama-compare [model-files' --dir --shapes --formats --blocks; --threads 2 --rounds 3 --steps 8 --warmup 2
                       --positions 16,1024 --prefill 128 --ctx 1280 --impl both|llama|ours --results bench/results
                       --llama-native DIR --no-plot]
              llama.cpp (its C API) and our CpuBlockExecutor on the same files in alternating rounds: decode tokens/s at
              each position (cache reset to it before each timed step) and a prefill from position 0; GB/s of the blocks'
              weights per step and ours / llama.cpp. Markdown, JSON lines and a PNG into --results. bench/llama-compare.sh.
          decode-profile [--file /work/bench-models/llama2-7b-4blk.f32.gguf --threads 2 --steps 20 --position 16
                       --long-position 1024 --sections mmap,reference,managed,hugepage,threads1,long,llama --loop-seconds 0]
              Where one decode step of ours goes (issue 14's f32 gap), public APIs only: the full step on the mapped
              file, on pre-faulted anonymous copies (4 KiB pages; 2 MiB THP), with 1 thread, at a long position; against
              bench-local references over the same bytes (plain read; the 7 GEMVs alone, K split or not, 4 hand-offs per
              block or 1 per step) and llama.cpp. --loop-seconds S: only steady steps for S seconds (for perf record).
          micro ...   BenchmarkDotNet micro-benchmarks (arguments go to BenchmarkSwitcher, e.g. --filter *DecodeStep*).
        """;

    private static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 1 : 0;
        }

        try
        {
            switch (args[0])
            {
                case "block":
                    return Block(BlockOptions.Parse(args.AsSpan(1)));
                case "crosscheck":
                    return CrossCheck(BlockOptions.Parse(args.AsSpan(1)));
                case "membw":
                    return MemoryBandwidth(BlockOptions.Parse(args.AsSpan(1)));
                case "swarm-model":
                    return SwarmBench.WriteModel(Arg(args, "--out") ?? throw new ArgumentException("--out is required."), IntArg(args, "--hidden", 2048), IntArg(args, "--layers", 12), (ulong)IntArg(args, "--seed", 1));
                case "chat-reuse":
                    return ChatReuseBench.RunAsync(
                        Arg(args, "--model-dir") ?? $"/tmp/petals-chat-model-h{IntArg(args, "--hidden", 1024)}-l{IntArg(args, "--layers", 4)}",
                        Arg(args, "--tokenizer") ?? Path.Combine("..", "shared", "tokenizers", "mistral"),
                        IntArg(args, "--hidden", 1024),
                        IntArg(args, "--layers", 4),
                        IntArg(args, "--turns", 5),
                        IntArg(args, "--message-tokens", 100),
                        IntArg(args, "--max-output-tokens", 32),
                        IntArg(args, "--rounds", 3),
                        IntArg(args, "--threads", 2)).GetAwaiter().GetResult();
                case "swarm-client":
                    return SwarmBench.RunClientAsync(
                        Arg(args, "--model") ?? throw new ArgumentException("--model is required."),
                        Arg(args, "--peers") ?? throw new ArgumentException("--peers is required."),
                        IntArg(args, "--prompt-tokens", 16),
                        IntArg(args, "--new-tokens", 32),
                        IntArg(args, "--threads", 2),
                        IntArg(args, "--rounds", 2),
                        Arg(args, "--output") == "json",
                        IntArg(args, "--local-spans", 1)).GetAwaiter().GetResult();
                case "wire-codec":
                    return WireCodecBench.RunAsync(
                        Arg(args, "--model"),
                        IntArg(args, "--random-hidden", 4096),
                        IntArg(args, "--servers", 3),
                        IntArg(args, "--prompt-tokens", 8),
                        Arg(args, "--prompt-ids"),
                        IntArg(args, "--new-tokens", 64),
                        Arg(args, "--codecs") ?? "fp32,fp16,bf16,int8",
                        IntArg(args, "--threads", 1),
                        Arg(args, "--output") == "json").GetAwaiter().GetResult();
                case "dht-sim":
                    {
                        var options = DhtSimOptions.Parse(args.AsSpan(1));
                        var result = DhtSim.RunAsync(options, Console.Error, CancellationToken.None).GetAwaiter().GetResult();
                        Console.WriteLine(options.Json ? result.ToJson() : result.ToText());
                        return result.All.SuccessRate >= 0.99 ? 0 : 4;
                    }

                case "balance-sim":
                    return Balance.BalanceSim.Run(Balance.BalanceSimOptions.Parse(args.AsSpan(1)), Console.Out, Console.Error);

                case "mux":
                    return Mux.MuxBench.RunAsync(Mux.MuxBenchOptions.Parse(args.AsSpan(1)), CancellationToken.None).GetAwaiter().GetResult();
                case "chaos":
                    return RunChaos(Chaos.ChaosOptions.Parse(args.AsSpan(1)));

                case "quant-fixtures":
                    return QuantFixtures.Run(Arg(args, "--out") ?? throw new ArgumentException("--out is required."), Arg(args, "--lib"));

                case "quant-accuracy":
                    return QuantReport.Accuracy(args[1..]);
                case "quant-memory":
                    return QuantReport.Memory(args[1..]);
                case "quant-speed":
                    return QuantSpeed.Run(IntArg(args, "--rows", 256), IntArg(args, "--columns", 4096));

                case "finite-check":
                    return FiniteCheckBench.Run(IntArg(args, "--iterations", 2000));

                case "soak":
                    return Soak.SoakRun.RunAsync(Soak.SoakOptions.Parse(args.AsSpan(1))).GetAwaiter().GetResult();

                case "fault-table-report":
                    {
                        // fault-table-report FILE.jsonl LOCAL_STEPS_PER_SECOND [the fault-table options of that run]
                        if (args.Length < 3)
                        {
                            throw new ArgumentException("fault-table-report needs the JSON lines file and the local reference's steps/s.");
                        }

                        var local = double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture);
                        return FaultTableCommand.Report(FaultTableOptions.Parse(args.AsSpan(3)), args[1], local);
                    }

                case "fault-table":
                    return FaultTableCommand.RunAsync(FaultTableOptions.Parse(args.AsSpan(1))).GetAwaiter().GetResult();

                case "verify":
                    return VerifyBench.RunAsync(args[1..]).GetAwaiter().GetResult();

                case "model-files":
                    {
                        var o = LlamaCpp.LlamaCompareOptions.Parse(args.AsSpan(1));
                        return LlamaCpp.CompareModels.Run(o.Directory, o.Shapes, o.Formats, o.Blocks, o.Std, o.Seed, o.Threads, o.Force, Console.Error);
                    }

                case "llama-compare":
                    return LlamaCpp.LlamaCompare.Run(LlamaCpp.LlamaCompareOptions.Parse(args.AsSpan(1)), Console.Out, Console.Error);

                case "decode-profile":
                    return LlamaCpp.DecodeProfile.Run(args[1..], Console.Out);

                case "micro":
                    BenchmarkDotNet.Running.BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args[1..]);
                    return 0;
                default:
                    Console.Error.WriteLine($"Unknown command '{args[0]}'.\n{Usage}");
                    return 2;
            }
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 3;
        }
    }

    private static int RunChaos(Chaos.ChaosOptions options)
    {
        Chaos.ChaosResult result;
        try
        {
            result = Chaos.ChaosRun.RunAsync(options, Console.Error).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is Petals.Client.RemoteChainException or Petals.Transport.TransportException or Petals.Protocol.ProtocolException)
        {
            // The generation failed for good: a kill the client did not recover from.
            Console.Error.WriteLine($"error: the generation failed: {e.Message}");
            return 4;
        }

        if (options.ResultsDirectory is { } directory)
        {
            Console.Error.WriteLine($"wrote {Chaos.ChaosRun.WriteResults(result, directory)}");
        }

        Console.WriteLine(options.Json ? Chaos.ChaosReport.SummaryJson(result) : Chaos.ChaosReport.Table(result));
        return result.MatchesLocal && result.UnrecoveredKills.Count == 0 && result.UnexpectedRecoveries.Count == 0 && result.Verification is not { Mismatches: > 0 } ? 0 : 4;
    }

    private static string? Arg(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static int IntArg(string[] args, string name, int fallback) =>
        Arg(args, name) is { } text
            ? int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var value) && value > 0
                ? value
                : throw new ArgumentException($"{name} must be a positive integer, not '{text}'.")
            : fallback;

    private static int Block(BlockOptions o)
    {
        var config = BlockShapes.Get(o.Shape);
        var dtype = o.DType == "f32" ? TensorDType.F32 : TensorDType.BF16;
        var fill = Stopwatch.StartNew();
        using var weights = InMemoryBlockWeights.CreateRandom(config, dtype, o.Seed);
        var fillMs = fill.Elapsed.TotalMilliseconds;
        var factory = ExecutorFactories.Create(o);
        var load = Stopwatch.StartNew();
        using var executor = factory.Create(weights, new BlockRange(0, 1));
        var loadMs = load.Elapsed.TotalMilliseconds;
        var results = BlockRunner.Run(executor, o, o.Cases);
        var description = ExecutorFactories.Describe(factory, executor);
        foreach (var r in results)
        {
            var gbps = r.Metrics.GigabytesPerSecond(r.MedianMs);
            var gflops = r.Metrics.GigaflopsPerSecond(r.MedianMs);
            if (o.Output == "json")
            {
                WriteJson(o, factory.Name, description, r, fillMs, loadMs);
            }
            else
            {
                Console.WriteLine($"ours ({factory.Name}) {o.Shape} {o.DType} {r.Case}: median {r.MedianMs:F2} ms, min {r.MinMs:F2} ms, {gbps:F2} GB/s, {gflops:F2} GFLOP/s, {r.AllocatedBytesPerStep} B allocated/step (fill {fillMs:F0} ms, load {loadMs:F0} ms, cache fill {r.CacheFillMs:F0} ms)");
            }
        }

        return 0;
    }

    private static void WriteJson(BlockOptions o, string backend, string description, BlockResult r, double fillMs, double loadMs)
    {
        using var stdout = Console.OpenStandardOutput();
        using (var w = new Utf8JsonWriter(stdout))
        {
            w.WriteStartObject();
            w.WriteString("impl", "ours");
            w.WriteString("backend", backend);
            w.WriteString("executor", description);
            w.WriteString("shape", o.Shape);
            w.WriteString("dtype", o.DType);
            w.WriteString("mode", r.Case.Mode);
            w.WriteNumber("position", r.Case.Position);
            w.WriteNumber("tokens", r.Case.Tokens);
            w.WriteNumber("threads", o.Threads);
            w.WriteNumber("processors", Environment.ProcessorCount);
            w.WriteNumber("warmup", o.Warmup);
            w.WriteNumber("iterations", o.Iterations);
            w.WriteNumber("median_ms", r.MedianMs);
            w.WriteNumber("min_ms", r.MinMs);
            w.WriteStartArray("times_ms");
            foreach (var t in r.TimesMs)
            {
                w.WriteNumberValue(t);
            }

            w.WriteEndArray();
            w.WriteNumber("weight_bytes", r.Metrics.WeightBytes);
            w.WriteNumber("kv_bytes_read", r.Metrics.KvBytesRead);
            w.WriteNumber("flops", r.Metrics.Flops);
            w.WriteNumber("gbps", r.Metrics.GigabytesPerSecond(r.MedianMs));
            w.WriteNumber("gflops", r.Metrics.GigaflopsPerSecond(r.MedianMs));
            w.WriteNumber("allocated_bytes_per_step", r.AllocatedBytesPerStep);
            w.WriteNumber("fill_ms", fillMs);
            w.WriteNumber("load_ms", loadMs);
            w.WriteNumber("cache_fill_ms", r.CacheFillMs);
            w.WriteString("runtime", RuntimeInformation.FrameworkDescription);
            w.WriteEndObject();
        }

        stdout.WriteByte((byte)'\n');
    }

    private static int CrossCheck(BlockOptions o)
    {
        var dir = o.Dir ?? throw new ArgumentException("crosscheck needs --dir.");
        var file = CrossCheckFile.Read(Path.Combine(dir, "block.safetensors"));
        var config = file.Weights.Config;
        var factory = ExecutorFactories.Create(o);
        using var executor = factory.Create(file.Weights, new BlockRange(0, 1));
        var total = file.Prefill + file.DecodeSteps;
        using var cache = executor.CreateCache(1, total);
        var hidden = (float[])file.Inputs.Clone();
        var h = config.HiddenSize;
        executor.Forward(hidden.AsSpan(0, file.Prefill * h), 1, file.Prefill, cache);
        for (var t = file.Prefill; t < total; t++)
        {
            executor.Forward(hidden.AsSpan(t * h, h), 1, 1, cache);
        }

        var output = Path.Combine(dir, "ours.f32");
        File.WriteAllBytes(output, MemoryMarshal.AsBytes(hidden.AsSpan()).ToArray());
        Console.WriteLine($"wrote {output}: prefill {file.Prefill} + {file.DecodeSteps} decode steps through {factory.Name} ({ExecutorFactories.Describe(factory, executor)})");
        return 0;
    }

    private static int MemoryBandwidth(BlockOptions o)
    {
        var length = 1 << 28; // 1 GiB of floats
        var data = new float[length];
        InMemoryBlockWeights.FillUniform(data.AsSpan(0, 1 << 20), 1, 0f, 1f);
        for (var offset = 1 << 20; offset < length; offset += 1 << 20)
        {
            data.AsSpan(0, 1 << 20).CopyTo(data.AsSpan(offset));
        }

        var threads = o.Threads;
        var partials = new float[threads];
        var best = double.MaxValue;
        for (var i = 0; i < o.Iterations + 1; i++)
        {
            var start = Stopwatch.GetTimestamp();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, p =>
            {
                var chunk = length / threads;
                partials[p] = System.Numerics.Tensors.TensorPrimitives.Sum<float>(data.AsSpan(p * chunk, chunk));
            });
            var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (i > 0)
            {
                best = Math.Min(best, ms);
            }
        }

        Console.WriteLine($"read bandwidth ({threads} threads): {(double)length * 4 / (best / 1000) / 1e9:F2} GB/s (best of {o.Iterations}; checksum {partials.Sum():E3})");
        return 0;
    }
}
