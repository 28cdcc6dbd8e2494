using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Execution;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Server;
using Petals.Testing.Execution;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Benchmarks;

/// <summary>
/// Issue 12's measurements of output verification, all in this process over the in-memory transport: real block
/// servers of a GGUF model, one of which (the liar, the whole model, so the router's first choice) echoes its input on
/// every step or on a random fraction of them, and honest servers that split the model twice (so a third opinion exists).
/// (a) for each check rate, over many seeded trials, the step at which the liar is first caught, against the closed form
/// <c>1 − (1 − p·f)^n</c>; (b) the same for a liar lying on a fraction f of steps; (c) the cost of the checks: extra
/// block passes per generated token and the time per token on honest servers, each rate against rate 0 in the same run.
/// </summary>
internal static class VerifyBench
{
    private static readonly BlockRange[] HonestSpans = [new(0, 2), new(2, 5), new(0, 3), new(3, 5)];

    public static async Task<int> RunAsync(string[] args)
    {
        var modelPath = Arg(args, "--model") ?? throw new ArgumentException("--model is required.");
        var rates = Doubles(Arg(args, "--rates") ?? "0.01,0.05,0.1,0.25,1");
        var fractions = Doubles(Arg(args, "--fractions") ?? "0.1,0.5");
        var fractionRates = Doubles(Arg(args, "--fraction-rates") ?? "0.1,1");
        var trials = Int(args, "--trials", 200);
        var steps = Int(args, "--steps", 32);
        var costTokens = Int(args, "--cost-tokens", 64);
        var costRounds = Int(args, "--cost-rounds", 3);
        var results = Arg(args, "--results");
        var seed = Int(args, "--seed", 1);

        using var weights = ModelLoader.Open(modelPath);
        if (weights.Config.NumLayers != 5)
        {
            throw new ArgumentException($"The benchmark's spans are laid out for a model of 5 blocks (stories260K); {modelPath} has {weights.Config.NumLayers}.");
        }

        var modelId = ModelIdentity.Compute(modelPath, weights.Config);
        var head = LanguageModelHead.Load(weights);
        var lines = new List<string>();
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"machine: {Environment.ProcessorCount} cores, load average {LoadAverage()}; model {Path.GetFileName(modelPath)} ({weights.Config.NumLayers} blocks, hidden {weights.Config.HiddenSize})");

        // (a) and (b): catch probability.
        text.AppendLine(CultureInfo.InvariantCulture, $"(a, b) a liar (blocks 0:5, echoes its input) on a fraction f of its steps; checks at rate p; {trials} trials of {steps} steps each: P(caught within n steps), measured vs 1-(1-p*f)^n");
        text.AppendLine("   f      p |  n=1: meas  form |  n=4: meas  form | n=16: meas  form | n=32: meas  form | unchecked lies before the catch (mean) | points beyond 3 sigma");
        var cases = rates.Select(p => (F: 1.0, P: p)).Concat(fractions.SelectMany(f => fractionRates.Select(p => (F: f, P: p)))).ToArray();
        await using (var swarm = await Swarm.StartAsync(weights, modelId, liar: true))
        {
            foreach (var (f, p) in cases)
            {
                var caughtAt = new List<int?>();
                var wrongTokens = 0L;
                for (var trial = 0; trial < trials; trial++)
                {
                    var (at, wrong) = await CatchTrialAsync(swarm, head, weights.Config, p, f, steps, seed + (trial * 7919) + (int)(p * 1e6) + (int)(f * 1e3));
                    caughtAt.Add(at);
                    wrongTokens += wrong;
                }

                var row = new StringBuilder(string.Create(CultureInfo.InvariantCulture, $"{f,4:0.##} {p,6:0.###} |"));
                var points = new List<object>();
                var beyond = 0;
                foreach (var n in new[] { 1, 4, 16, 32 }.Where(n => n <= steps))
                {
                    var measured = caughtAt.Count(a => a is { } s && s < n) / (double)trials;
                    var form = 1 - Math.Pow(1 - (p * f), n);
                    row.Append(CultureInfo.InvariantCulture, $" {measured,10:0.000} {form,5:0.000} |");
                    points.Add(new { n, measured, closed_form = form });
                    if (Math.Abs(measured - form) > (3 * Math.Sqrt(form * (1 - form) / trials)) + 1e-9)
                    {
                        beyond++;
                    }
                }

                row.Append(CultureInfo.InvariantCulture, $" {wrongTokens / (double)trials,37:0.00} | {beyond}");
                text.AppendLine(row.ToString());
                lines.Add(JsonSerializer.Serialize(new { kind = "catch", lie_fraction = f, rate = p, trials, steps, caught = caughtAt.Count(a => a is not null), points, mean_unchecked_lies_before_catch = wrongTokens / (double)trials, points_beyond_3_sigma = beyond }));
            }
        }

        // (c): cost on honest servers, every rate against rate 0 in the same run, interleaved.
        text.AppendLine(CultureInfo.InvariantCulture, $"(c) cost on honest servers: {costTokens} tokens after a 5-token prompt, {costRounds} rounds interleaved; extra block passes per token = recomputed block x positions / session's block x positions");
        text.AppendLine("      p | ms/token | ratio to p=0 | checks | extra compute | mismatches | largest honest error");
        await using (var honest = await Swarm.StartAsync(weights, modelId, liar: false))
        {
            var all = new[] { 0.0 }.Concat(rates).ToArray();
            var times = all.ToDictionary(p => p, _ => new List<double>());
            var stats = all.ToDictionary(p => p, _ => new List<VerificationStatistics>());
            for (var round = 0; round < costRounds; round++)
            {
                foreach (var p in all)
                {
                    var (ms, s) = await CostRunAsync(honest, head, weights.Config, p, costTokens, seed + round);
                    times[p].Add(ms);
                    stats[p].Add(s);
                }
            }

            var baseline = Median(times[0.0]);
            var sessionPasses = (double)weights.Config.NumLayers * (5 + costTokens - 1);
            foreach (var p in all)
            {
                var ms = Median(times[p]);
                var checks = stats[p].Average(s => s.Checks);
                var extra = stats[p].Average(s => s.BlockPositions) / sessionPasses;
                var mismatches = stats[p].Sum(s => s.Mismatches);
                var largest = stats[p].Max(s => s.LargestPassedError);
                text.AppendLine(CultureInfo.InvariantCulture, $" {p,6:0.###} | {ms,8:0.000} | {ms / baseline,12:0.00} | {checks,6:0.0} | {extra,12:0.00}x | {mismatches,10} | {largest:G3}");
                lines.Add(JsonSerializer.Serialize(new { kind = "cost", rate = p, tokens = costTokens, rounds = costRounds, median_ms_per_token = ms, ratio_to_rate_0 = ms / baseline, mean_checks = checks, extra_block_passes_per_session_pass = extra, mismatches, largest_passed_error = largest }));
            }
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"load average at the end: {LoadAverage()}");
        Console.Write(text.ToString());
        if (results is not null)
        {
            Directory.CreateDirectory(results);
            var stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmm", CultureInfo.InvariantCulture);
            await File.WriteAllLinesAsync(Path.Combine(results, $"verify-{stamp}.jsonl"), lines).ConfigureAwait(false);
            await File.WriteAllTextAsync(Path.Combine(results, $"verify-{stamp}.txt"), text.ToString()).ConfigureAwait(false);
            Console.WriteLine($"results: {Path.Combine(results, $"verify-{stamp}.jsonl")}");
        }

        return 0;
    }

    /// <summary>One trial: a fresh client (no bans), greedy steps until the liar is caught or <paramref name="steps"/> ran.</summary>
    /// <returns>The step (0 = the prompt's) at which the liar was caught, or null; and how many tokens came out wrong before.</returns>
    private static async Task<(int? CaughtAt, int Wrong)> CatchTrialAsync(Swarm swarm, LanguageModelHead head, ModelConfig config, double rate, double fraction, int steps, int seed)
    {
        swarm.Liar!.Fraction = fraction;
        var options = new RemoteSequenceOptions { Verification = new VerificationOptions { Rate = rate, Random = new Random(seed) }, RecoveryBackoff = TimeSpan.Zero };
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, swarm.Addresses, config, swarm.ModelId, options).ConfigureAwait(false);
        int? caughtAt = null;
        var step = 0;
        remote.VerificationFailed += (_, m) => caughtAt ??= step;
        await using var session = await remote.OpenSessionAsync(1, 5 + steps, CancellationToken.None).ConfigureAwait(false);
        var wrong = 0;
        int[] input = [1, 403, 407, 261, 378];
        for (step = 0; step < steps && caughtAt is null; step++)
        {
            var lies = swarm.Liar.Lies;
            input = [await StepAsync(session, head, config, input).ConfigureAwait(false)];

            // A lie that went through unchecked becomes a wrong token (and poisons every later one).
            if (caughtAt is null && swarm.Liar.Lies > lies)
            {
                wrong++;
            }
        }

        return (caughtAt, wrong);
    }

    /// <summary>One generation of <paramref name="tokens"/> tokens on honest servers at <paramref name="rate"/>: ms per token and the checks' statistics.</summary>
    private static async Task<(double MsPerToken, VerificationStatistics Stats)> CostRunAsync(Swarm swarm, LanguageModelHead head, ModelConfig config, double rate, int tokens, int seed)
    {
        var options = new RemoteSequenceOptions { Verification = new VerificationOptions { Rate = rate, Random = new Random(seed) } };
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(swarm.Transport, swarm.Addresses, config, swarm.ModelId, options).ConfigureAwait(false);
        await using var session = await remote.OpenSessionAsync(1, 5 + tokens, CancellationToken.None).ConfigureAwait(false);
        int[] input = [1, 403, 407, 261, 378];
        var timer = Stopwatch.StartNew();
        for (var step = 0; step < tokens; step++)
        {
            input = [await StepAsync(session, head, config, input).ConfigureAwait(false)];
        }

        return (timer.Elapsed.TotalMilliseconds / tokens, remote.Verification);
    }

    private static async Task<int> StepAsync(ITransformerSession session, LanguageModelHead head, ModelConfig config, int[] input)
    {
        var width = config.HiddenSize;
        var hidden = new float[input.Length * width];
        head.Embed(input, hidden);
        await session.ForwardAsync(hidden, input.Length, CancellationToken.None).ConfigureAwait(false);
        var logits = new float[config.VocabSize];
        head.ComputeLogits(hidden.AsSpan((input.Length - 1) * width, width), logits, new float[width]);
        var best = 0;
        for (var v = 1; v < logits.Length; v++)
        {
            if (logits[v] > logits[best])
            {
                best = v;
            }
        }

        return best;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    private static string? Arg(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static int Int(string[] args, string name, int fallback) =>
        Arg(args, name) is { } text ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;

    private static double[] Doubles(string text) => [.. text.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(t => double.Parse(t, CultureInfo.InvariantCulture))];

    /// <summary>The servers: the liar (0:5) when asked, and honest 0:2, 2:5, 0:3, 3:5, on one memory transport.</summary>
    private sealed class Swarm : IAsyncDisposable
    {
        private readonly List<BlockServer> _servers = [];
        private readonly List<ITransportListener> _listeners = [];
        private readonly List<IBlockExecutor> _executors = [];

        public MemoryTransport Transport { get; } = new();

        public List<PeerAddress> Addresses { get; } = [];

        public string ModelId { get; private set; } = string.Empty;

        public LyingBlockExecutor? Liar { get; private set; }

        public static async Task<Swarm> StartAsync(IModelWeights weights, string modelId, bool liar)
        {
            var swarm = new Swarm { ModelId = modelId };
            var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 });
            var spans = liar ? [new BlockRange(0, 5), .. HonestSpans] : HonestSpans;
            for (var i = 0; i < spans.Length; i++)
            {
                IBlockExecutor executor = factory.Create(weights, spans[i]);
                if (liar && i == 0)
                {
                    executor = swarm.Liar = new LyingBlockExecutor(executor, seed: 5);
                }

                swarm._executors.Add(executor);
                var server = new BlockServer(executor, new BlockServerOptions { Blocks = spans[i], ModelId = modelId, PeerId = i == 0 && liar ? "liar" : $"honest-{i}" });
                var listener = await swarm.Transport.ListenAsync(PeerAddress.Parse($"mem://verify-{Guid.NewGuid():N}")).ConfigureAwait(false);
                swarm._listeners.Add(listener);
                await server.StartAsync(listener).ConfigureAwait(false);
                swarm._servers.Add(server);
                swarm.Addresses.Add(listener.LocalAddress);
            }

            return swarm;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var server in _servers)
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }

            foreach (var listener in _listeners)
            {
                await listener.DisposeAsync().ConfigureAwait(false);
            }

            foreach (var executor in _executors)
            {
                executor.Dispose();
            }
        }
    }
}
