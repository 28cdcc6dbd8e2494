using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Formats.HuggingFace;
using Petals.Transport;

namespace Petals.Benchmarks;

/// <summary>One generation of one strategy at one failure rate.</summary>
/// <param name="Strategy">The strategy.</param>
/// <param name="Length">The tokens to generate (= inference steps when nothing fails).</param>
/// <param name="Rate">The failure probability of each server of the active chain before each step.</param>
/// <param name="Repetition">The repetition (0-based).</param>
/// <param name="Steps">The tokens generated when the run ended (for a restart: those of the last attempt).</param>
/// <param name="Finished">Whether all <paramref name="Length"/> tokens were generated within the cap.</param>
/// <param name="Seconds">Wall time from the first step to the end of the run (reconnections, restarts and recoveries included).</param>
/// <param name="ExecutedSteps">Forward passes sent through the chain, wasted ones (before a restart, failed ones) included.</param>
/// <param name="Failures">Server failures injected during the run.</param>
/// <param name="Recoveries">Restarts (caching with restarts), step retries (no caching) or span recoveries (Algorithm 1).</param>
/// <param name="TokensMatch">Whether the tokens generated equal the local failure-free reference's.</param>
/// <param name="FirstError">The first failure the client saw, or null.</param>
internal sealed record FaultRun(
    FaultStrategy Strategy,
    int Length,
    double Rate,
    int Repetition,
    int Steps,
    bool Finished,
    double Seconds,
    int ExecutedSteps,
    int Failures,
    long Recoveries,
    bool TokensMatch,
    string? FirstError)
{
    /// <summary>The most tokens any attempt generated (caching with restarts); otherwise <see cref="Steps"/>.</summary>
    public int Furthest { get; init; } = -1;

    /// <summary>Algorithm 1: the time from detecting each failure to resuming the step (<see cref="SpanRecovery.DetectionToResume"/>), in ms.</summary>
    public IReadOnlyList<double> RecoveryMs { get; init; } = [];

    /// <summary>Each failure injected: "step N: address (blocks)".</summary>
    public IReadOnlyList<string> InjectionLog { get; init; } = [];

    /// <summary>Algorithm 1: one line per recovery (position, blocks, attempt, failed and replacement servers, time, error).</summary>
    public IReadOnlyList<string> RecoveryLog { get; init; } = [];

    /// <summary>Algorithm 1: the recoveries that were the first of their step (<see cref="SpanRecovery.Attempt"/> 1); later ones replaced a replacement.</summary>
    public long FirstAttemptRecoveries { get; init; }

    /// <summary>Algorithm 1: the tokens replayed to replacement servers, all recoveries together.</summary>
    public long ReplayedTokens { get; init; }

    /// <summary>Whether the run ended with an error (the strategy could not go on), rather than finishing or reaching the cap.</summary>
    public bool Failed { get; init; }

    /// <summary>Tokens per second over the whole run; for an unfinished run, over what ran.</summary>
    public double StepsPerSecond => Steps / Seconds;

    /// <summary>Reads a run written by <see cref="ToJson"/> (the logs are optional).</summary>
    public static FaultRun FromJson(string line)
    {
        using var document = JsonDocument.Parse(line);
        var r = document.RootElement;
        string? Text(string name) => r.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        string[] Lines(string name) => r.TryGetProperty(name, out var v) ? [.. v.EnumerateArray().Select(x => x.GetString() ?? string.Empty)] : [];
        var strategy = Text("strategy") switch
        {
            "restarts" => FaultStrategy.CachingWithRestarts,
            "no-caching" => FaultStrategy.NoCaching,
            "alg1" => FaultStrategy.Algorithm1,
            var other => throw new FormatException($"Unknown strategy '{other}' in a fault-table run."),
        };
        return new FaultRun(
            strategy,
            r.GetProperty("length").GetInt32(),
            r.GetProperty("rate").GetDouble(),
            r.GetProperty("repetition").GetInt32(),
            r.GetProperty("steps").GetInt32(),
            r.GetProperty("finished").GetBoolean(),
            r.GetProperty("seconds").GetDouble(),
            r.GetProperty("executed_steps").GetInt32(),
            r.GetProperty("failures").GetInt32(),
            r.GetProperty("recoveries").GetInt64(),
            r.GetProperty("tokens_match").GetBoolean(),
            Text("first_error"))
        {
            Failed = r.TryGetProperty("failed", out var failed) && failed.GetBoolean(),
            Furthest = r.TryGetProperty("furthest", out var furthest) ? furthest.GetInt32() : -1,
            RecoveryMs = r.TryGetProperty("recovery_ms", out var ms) ? [.. ms.EnumerateArray().Select(x => x.GetDouble())] : [],
            ReplayedTokens = r.TryGetProperty("replayed_tokens", out var replayed) ? replayed.GetInt64() : 0,
            FirstAttemptRecoveries = r.TryGetProperty("first_attempt_recoveries", out var first) ? first.GetInt64() : -1,
            RecoveryLog = Lines("recovery_log"),
            InjectionLog = Lines("injection_log"),
        };
    }

    public string ToJson() => JsonSerializer.Serialize(new
    {
        strategy = FaultTableOptions.Name(Strategy),
        length = Length,
        rate = Rate,
        repetition = Repetition,
        steps = Steps,
        finished = Finished,
        failed = Failed,
        furthest = Math.Max(Furthest, Steps),
        seconds = Seconds,
        steps_per_second = StepsPerSecond,
        executed_steps = ExecutedSteps,
        failures = Failures,
        recoveries = Recoveries,
        tokens_match = TokensMatch,
        first_error = FirstError,
        recovery_ms = RecoveryMs,
        replayed_tokens = ReplayedTokens,
        first_attempt_recoveries = FirstAttemptRecoveries,
        recovery_log = RecoveryLog,
        injection_log = InjectionLog,
    });
}

/// <summary>
/// The Petals paper's fault-tolerance table (Table 1 of arXiv:2312.08361) on one machine: steps/s of greedy generation
/// through an in-process swarm (<see cref="FaultSwarm"/>) for caching with restarts, no caching and Algorithm 1, at
/// several failure rates, where before each step each server of the client's active chain fails with the given
/// probability (its connections are aborted; it stays reachable, as a restarted server would be).
/// </summary>
internal sealed class FaultTable : IAsyncDisposable
{
    private const int Bos = 1;
    private const string ModelId = "fault-table-random-llama";

    private readonly FaultTableOptions _options;
    private readonly TextWriter? _log;
    private readonly string _directory;
    private readonly IModelWeights _weights;
    private readonly LanguageModelHead _head;
    private readonly float[] _logits;
    private readonly float[] _scratch;
    private FaultSwarm? _swarm;
    private int[] _reference = [];

    private FaultTable(FaultTableOptions options, TextWriter? log, string directory, IModelWeights weights)
    {
        _options = options;
        _log = log;
        _directory = directory;
        _weights = weights;
        _head = LanguageModelHead.Load(weights);
        _logits = new float[weights.Config.VocabSize];
        _scratch = new float[weights.Config.HiddenSize];
    }

    public ModelConfig Config => _weights.Config;

    /// <summary>Local failure-free generation (all blocks in one executor, no network): steps/s and the reference tokens.</summary>
    public double LocalStepsPerSecond { get; private set; }

    public FaultSwarm Swarm => _swarm ?? throw new InvalidOperationException("Not started.");

    /// <summary>The model shape: Llama with 64-wide heads, 4 query heads per KV head, vocabulary 32,000.</summary>
    public static ModelConfig Shape(FaultTableOptions options) => new()
    {
        HiddenSize = options.Hidden,
        IntermediateSize = options.Hidden * 11 / 4,
        NumLayers = options.Blocks,
        NumHeads = options.Hidden / 64,
        NumKeyValueHeads = Math.Max(1, options.Hidden / 256),
        HeadDim = 64,
        VocabSize = 32000,
        RmsNormEps = 1e-5,
        MaxPositionEmbeddings = Math.Max(4096, options.Lengths.Max() + 1),
        BosTokenId = Bos,
        EosTokenIds = [2],
        TieWordEmbeddings = true,
    };

    /// <summary>Writes the random model, computes the local reference and starts the swarm.</summary>
    public static async Task<FaultTable> StartAsync(FaultTableOptions options, TextWriter? log, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "petals-fault-table-" + Guid.NewGuid().ToString("N")[..8]);
        RandomLlamaCheckpoint.Write(directory, Shape(options), (ulong)options.Seed);
        var table = new FaultTable(options, log, directory, ModelLoader.Open(directory));
        try
        {
            table.ComputeReference();
            table._swarm = await FaultSwarm.StartAsync(options, table._weights, ModelId, cancellationToken).ConfigureAwait(false);
            return table;
        }
        catch
        {
            await table.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Runs every strategy at every length and rate, printing progress; returns the runs.</summary>
    public async Task<List<FaultRun>> RunAllAsync(CancellationToken cancellationToken)
    {
        // Warm up (JIT, connections, server executors) with a short failure-free run of each strategy; not recorded.
        foreach (var strategy in _options.Strategies)
        {
            var warm = await RunAsync(strategy, Math.Min(16, _options.Lengths.Min()), 0, -1, cancellationToken).ConfigureAwait(false);
            _log?.WriteLine(string.Create(CultureInfo.InvariantCulture, $"warm-up {FaultTableOptions.Name(strategy)}: {warm.StepsPerSecond:F2} steps/s"));
        }

        var runs = new List<FaultRun>();
        for (var l = 0; l < _options.Lengths.Count; l++)
        {
            for (var s = 0; s < _options.Strategies.Count; s++)
            {
                for (var r = 0; r < _options.Rates.Count; r++)
                {
                    for (var rep = 0; rep < _options.RepetitionsFor(_options.Lengths[l]); rep++)
                    {
                        var strategy = _options.Strategies[s];
                        var run = await RunAsync(strategy, _options.Lengths[l], _options.Rates[r], rep, cancellationToken).ConfigureAwait(false);
                        runs.Add(run);
                        _log?.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"[{DateTime.UtcNow:HH:mm:ss}] {FaultTableOptions.Name(strategy),-10} L={run.Length,-5} p={run.Rate,-7:G3} rep {rep}: {run.StepsPerSecond,7:F2} steps/s, {run.Steps}/{run.Length} steps{(run.Finished ? string.Empty : run.Failed ? " (FAILED)" : " (cap reached)")} in {run.Seconds:F1} s; executed {run.ExecutedSteps}, failures {run.Failures}, recoveries {run.Recoveries}{(run.RecoveryMs.Count > 0 ? string.Create(CultureInfo.InvariantCulture, $" (median {FaultReport.Median([.. run.RecoveryMs]):F0} ms, max {run.RecoveryMs.Max():F0} ms, {run.ReplayedTokens} tokens replayed)") : string.Empty)}, tokens {(run.TokensMatch ? "= reference" : "DIFFER")}{(run.FirstError is null ? string.Empty : "; first error: " + run.FirstError)}"));
                        if (_options.JsonLines is { } path)
                        {
                            await File.AppendAllTextAsync(path, run.ToJson() + "\n", cancellationToken).ConfigureAwait(false);
                        }

                        if (!run.Finished)
                        {
                            // A cell whose run reached the cap (or broke off) would do so again: its other repetitions are skipped.
                            break;
                        }
                    }
                }
            }
        }

        return runs;
    }

    /// <summary>One run; the failure draws are seeded by the options' seed, the strategy, length, rate and repetition.</summary>
    public async Task<FaultRun> RunAsync(FaultStrategy strategy, int length, double rate, int repetition, CancellationToken cancellationToken)
    {
        if (length > _reference.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"The reference holds {_reference.Length} tokens.");
        }

        var seed = unchecked((_options.Seed * 1_000_003) + ((int)strategy * 10_007) + (length * 101) + (int)Math.Round(rate * 1e6) + (repetition * 7));
        var injector = new Injector(Swarm, new Random(seed), rate);
        var run = strategy switch
        {
            FaultStrategy.CachingWithRestarts => await RunRestartsAsync(injector, length, rate, repetition, cancellationToken).ConfigureAwait(false),
            FaultStrategy.NoCaching => await RunNoCachingAsync(injector, length, rate, repetition, cancellationToken).ConfigureAwait(false),
            FaultStrategy.Algorithm1 => await RunAlgorithm1Async(injector, length, rate, repetition, cancellationToken).ConfigureAwait(false),
            _ => throw new ArgumentOutOfRangeException(nameof(strategy), strategy, null),
        };
        return run with { InjectionLog = [.. injector.Log] };
    }

    /// <summary>Algorithm 1: one session on a chain connected through the sequence manager, which recovers from failures by itself.</summary>
    private async Task<FaultRun> RunAlgorithm1Async(Injector injector, int length, double rate, int repetition, CancellationToken cancellationToken)
    {
        var cap = _options.CapFor(FaultStrategy.Algorithm1);
        var tokens = new int[length];
        var step = new float[Config.HiddenSize];
        var done = 0;
        string? error = null;
        var recoveries = new List<SpanRecovery>();
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(Swarm.Faults, Swarm.Sequence, Config, ClientOptions(), cancellationToken).ConfigureAwait(false);
        remote.SpanRecovered += (_, recovery) => recoveries.Add(recovery);
        var timer = Stopwatch.StartNew();
        try
        {
            await using var session = await remote.OpenSessionAsync(1, length, cancellationToken).ConfigureAwait(false);
            var token = Bos;
            for (; done < length && timer.Elapsed.TotalSeconds < cap; done++)
            {
                injector.BeforeStep(remote.Spans);
                _head.Embed([token], step);
                await session.ForwardAsync(step, 1, cancellationToken).ConfigureAwait(false);
                token = tokens[done] = Next(step);
            }
        }
        catch (Exception e) when (IsFailure(e, cancellationToken))
        {
            error = Describe(e);
        }

        var seconds = timer.Elapsed.TotalSeconds;
        return new FaultRun(FaultStrategy.Algorithm1, length, rate, repetition, done, done == length, seconds, done, injector.Failures, remote.Recoveries, Matches(tokens, done), error ?? (recoveries.Count > 0 ? Describe(recoveries[0].Error) : null))
        {
            Failed = error is not null,
            RecoveryMs = [.. recoveries.Select(r => r.DetectionToResume.TotalMilliseconds)],
            ReplayedTokens = recoveries.Sum(r => (long)r.ReplayedTokens),
            FirstAttemptRecoveries = recoveries.Count(r => r.Attempt == 1),
            RecoveryLog = [.. recoveries.Select(r => string.Create(CultureInfo.InvariantCulture,
                $"position {r.Position}, blocks {r.Blocks}, attempt {r.Attempt}, {r.FailedAddress} -> {string.Join(" + ", r.Replacements.Select(x => x.Address.ToString()))}, {r.ReplayedTokens} replayed, {r.DetectionToResume.TotalMilliseconds:F0} ms: {r.Error.GetType().Name}: {r.Error.Message}"))],
        };
    }

    /// <summary>
    /// Caching with restarts: a session on a chain routed by the sequence manager and connected by address (such a chain
    /// does not recover); on any failure the chain and session are dropped, a chain is routed and connected again and the
    /// generation restarts from its first token.
    /// </summary>
    private async Task<FaultRun> RunRestartsAsync(Injector injector, int length, double rate, int repetition, CancellationToken cancellationToken)
    {
        var cap = _options.CapFor(FaultStrategy.CachingWithRestarts);
        var tokens = new int[length];
        var step = new float[Config.HiddenSize];
        var done = 0;
        var furthest = 0;
        var executed = 0;
        var restarts = 0;
        string? error = null;
        PinnedChain? remote = await ConnectByAddressAsync(length, cancellationToken).ConfigureAwait(false);
        var timer = Stopwatch.StartNew();
        while (done < length && timer.Elapsed.TotalSeconds < cap)
        {
            done = 0;
            ITransformerSession? session = null;
            try
            {
                remote ??= await ConnectByAddressAsync(length, cancellationToken).ConfigureAwait(false);
                session = await remote.Blocks.OpenSessionAsync(1, length, cancellationToken).ConfigureAwait(false);
                var token = Bos;
                for (; done < length && timer.Elapsed.TotalSeconds < cap; done++)
                {
                    injector.BeforeStep(remote.Blocks.Spans);
                    _head.Embed([token], step);
                    executed++;
                    await session.ForwardAsync(step, 1, cancellationToken).ConfigureAwait(false);
                    token = tokens[done] = Next(step);
                }
            }
            catch (Exception e) when (IsFailure(e, cancellationToken))
            {
                error ??= Describe(e);
                restarts++;
                await DisposeQuietlyAsync(session, remote).ConfigureAwait(false);
                session = null;
                remote = null;
            }
            finally
            {
                furthest = Math.Max(furthest, done);
                await DisposeQuietlyAsync(session, null).ConfigureAwait(false);
            }
        }

        await DisposeQuietlyAsync(null, remote).ConfigureAwait(false);
        var seconds = timer.Elapsed.TotalSeconds;
        return new FaultRun(FaultStrategy.CachingWithRestarts, length, rate, repetition, done, done == length, seconds, executed, injector.Failures, restarts, Matches(tokens, done), error) { Furthest = furthest };
    }

    /// <summary>
    /// No caching: each step runs the whole sequence so far through the chain statelessly and keeps the last position's
    /// output; when a step fails, a chain is routed and connected again and the same step is retried.
    /// </summary>
    private async Task<FaultRun> RunNoCachingAsync(Injector injector, int length, double rate, int repetition, CancellationToken cancellationToken)
    {
        var cap = _options.CapFor(FaultStrategy.NoCaching);
        var h = Config.HiddenSize;
        var tokens = new int[length];
        var embeddings = new float[length * h];
        var work = new float[length * h];
        var done = 0;
        var executed = 0;
        var retries = 0;
        string? error = null;
        PinnedChain? remote = await ConnectByAddressAsync(length, cancellationToken).ConfigureAwait(false);
        var timer = Stopwatch.StartNew();
        try
        {
            var token = Bos;
            for (; done < length && timer.Elapsed.TotalSeconds < cap; done++)
            {
                _head.Embed([token], embeddings.AsSpan(done * h, h));
                var count = done + 1;
                injector.BeforeStep(remote!.Blocks.Spans);
                while (true)
                {
                    try
                    {
                        remote ??= await ConnectByAddressAsync(length, cancellationToken).ConfigureAwait(false);
                        embeddings.AsSpan(0, count * h).CopyTo(work);
                        executed++;
                        await remote.Blocks.ForwardAsync(work.AsMemory(0, count * h), 1, count, cancellationToken).ConfigureAwait(false);
                        break;
                    }
                    catch (Exception e) when (IsFailure(e, cancellationToken) && timer.Elapsed.TotalSeconds < cap)
                    {
                        error ??= Describe(e);
                        retries++;
                        await DisposeQuietlyAsync(null, remote).ConfigureAwait(false);
                        remote = null;
                    }
                }

                token = tokens[done] = Next(work.AsSpan((count - 1) * h, h));
            }
        }
        finally
        {
            await DisposeQuietlyAsync(null, remote).ConfigureAwait(false);
        }

        var seconds = timer.Elapsed.TotalSeconds;
        return new FaultRun(FaultStrategy.NoCaching, length, rate, repetition, done, done == length, seconds, executed, injector.Failures, retries, Matches(tokens, done), error);
    }

    /// <summary>Routes the model with the sequence manager's router and connects that route pinned, without recovery.</summary>
    private async Task<PinnedChain> ConnectByAddressAsync(int length, CancellationToken cancellationToken)
    {
        var route = Swarm.Sequence.RouteInference(1, length);
        var options = ClientOptions();
        options.MaxRecoveryAttempts = 0;
        return await PinnedChain.ConnectAsync(Swarm.Faults, route, Config, ModelId, options, cancellationToken).ConfigureAwait(false);
    }

    private static RemoteSequenceOptions ClientOptions() => new() { RequestTimeout = TimeSpan.FromSeconds(60) };

    private static bool IsFailure(Exception e, CancellationToken cancellationToken) =>
        !(e is OperationCanceledException && cancellationToken.IsCancellationRequested) && e is not OutOfMemoryException;

    private static string Describe(Exception e) => $"{e.GetType().Name}: {e.Message}";

    private static async ValueTask DisposeQuietlyAsync(ITransformerSession? session, IAsyncDisposable? remote)
    {
        try
        {
            if (session is not null)
            {
                await session.DisposeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is ProtocolException or TransportException or IOException or TimeoutException or InvalidOperationException or OperationCanceledException)
        {
            // The connection under it was aborted; nothing to release.
        }

        if (remote is not null)
        {
            await remote.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Greedy choice from one position's output.</summary>
    private int Next(ReadOnlySpan<float> hidden)
    {
        _head.ComputeLogits(hidden, _logits, _scratch);
        var best = 0;
        for (var i = 1; i < _logits.Length; i++)
        {
            if (_logits[i] > _logits[best])
            {
                best = i;
            }
        }

        return best;
    }

    private bool Matches(int[] tokens, int count) => tokens.AsSpan(0, count).SequenceEqual(_reference.AsSpan(0, count));

    /// <summary>Greedy generation of the longest length with all blocks in one local executor: the tokens every run must give.</summary>
    private void ComputeReference()
    {
        var length = _options.Lengths.Max();
        var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = _options.Threads });
        using var local = new LocalTransformerBlocks([factory.Create(_weights, new BlockRange(0, Config.NumLayers))]);
        var tokens = new int[length];
        var step = new float[Config.HiddenSize];
        var session = local.OpenSessionAsync(1, length).AsTask().GetAwaiter().GetResult();
        var timer = Stopwatch.StartNew();
        try
        {
            var token = Bos;
            for (var i = 0; i < length; i++)
            {
                _head.Embed([token], step);
                session.ForwardAsync(step, 1).AsTask().GetAwaiter().GetResult();
                token = tokens[i] = Next(step);
            }
        }
        finally
        {
            session.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        LocalStepsPerSecond = length / timer.Elapsed.TotalSeconds;
        _reference = tokens;
        _log?.WriteLine(string.Create(CultureInfo.InvariantCulture, $"local reference: {length} tokens at {LocalStepsPerSecond:F1} steps/s ({tokens.Distinct().Count()} distinct tokens)"));
    }

    public async ValueTask DisposeAsync()
    {
        if (_swarm is not null)
        {
            await _swarm.DisposeAsync().ConfigureAwait(false);
        }

        _weights.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A temporary directory left behind is harmless.
        }
    }

    /// <summary>Before each step, each server of the active chain fails with probability p (draws from a seeded generator).</summary>
    private sealed class Injector(FaultSwarm swarm, Random random, double rate)
    {
        private int _steps;

        public int Failures => Log.Count;

        /// <summary>"step N: address" for each failure injected (N counts the calls, restarts and retries included).</summary>
        public List<string> Log { get; } = [];

        public void BeforeStep(IReadOnlyList<RemoteSpanInfo> chain)
        {
            var step = _steps++;
            if (rate <= 0)
            {
                return;
            }

            foreach (var span in chain)
            {
                if (random.NextDouble() < rate)
                {
                    swarm.Fail(span.Address);
                    Log.Add(string.Create(CultureInfo.InvariantCulture, $"step {step}: {span.Address} (blocks {span.Blocks})"));
                }
            }
        }
    }
}
