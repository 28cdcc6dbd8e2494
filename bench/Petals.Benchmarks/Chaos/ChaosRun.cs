using System.Diagnostics;
using System.Globalization;
using Petals.Backends.Cpu;
using Petals.Cli.Commands;
using Petals.Client;
using Petals.Formats;
using Petals.Generation;
using Petals.Tokenization;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Benchmarks.Chaos;

/// <summary>
/// The chaos run of issue 5: a swarm of <c>petals serve</c> processes with overlapping spans (<see cref="ChaosSwarm"/>),
/// a client in this process connected through the DHT, greedy generation token by token, and every
/// <see cref="ChaosOptions.KillEvery"/> tokens a SIGKILL of a server of the active chain (restarted afterwards as a new
/// process on the same span). The output must equal local generation; every recovery the client reports is recorded
/// with its detection-to-resume and kill-to-resume times.
/// </summary>
internal static class ChaosRun
{
    /// <summary>Runs the chaos scenario of <paramref name="options"/>, logging progress to <paramref name="log"/>.</summary>
    /// <returns>What was generated, the kills and the recoveries.</returns>
    /// <exception cref="ArgumentException">When the options do not fit the model (e.g. a span whose loss leaves a block uncovered).</exception>
    /// <exception cref="InvalidOperationException">When a server process fails to start or the active chain holds none of the run's servers.</exception>
    /// <exception cref="TimeoutException">When a server is not online within <see cref="ChaosOptions.StartupTimeout"/>.</exception>
    /// <exception cref="RemoteChainException">When the generation fails for good (no recovery possible).</exception>
    public static async Task<ChaosResult> RunAsync(ChaosOptions options, TextWriter log, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        if (!File.Exists(options.Model) && !Directory.Exists(options.Model))
        {
            throw new ArgumentException($"--model: '{options.Model}' does not exist.");
        }

        var generation = new GenerationOptions { MaxNewTokens = options.NewTokens, StopTokenIds = [] };

        // The reference first, while no server runs.
        int[] prompt;
        var expected = new List<int>(options.NewTokens);
        using (var local = CausalLanguageModel.LoadLocal(options.Model, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 })))
        {
            options.Validate(local.Config.NumLayers);
            prompt = local.EncodePrompt(options.Prompt);
            await foreach (var token in local.GenerateAsync(prompt, generation, cancellationToken).ConfigureAwait(false))
            {
                expected.Add(token);
            }
        }

        await log.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"local reference: {expected.Count} tokens after a prompt of {prompt.Length}")).ConfigureAwait(false);

        using var weights = ModelLoader.Open(options.Model);
        var config = weights.Config;
        await using var swarm = await ChaosSwarm.StartAsync(options, config.NumLayers, log, cancellationToken).ConfigureAwait(false);
        await using var client = await ClientDiscovery.JoinAsync(swarm.BootstrapAddress.ToString(), cancellationToken).ConfigureAwait(false);
        // The client's view must be refreshed more often than announcements expire (3 intervals), or it goes stale between reads.
        var swarmOptions = new SwarmSequenceOptions { RefreshInterval = TimeSpan.FromSeconds(options.AnnounceIntervalSeconds) };
        await using var sequence = new SwarmSequenceManager(client.Discovery, ModelIdentity.Compute(options.Model, config), config.NumLayers, swarmOptions);
        await sequence.StartAsync(cancellationToken).ConfigureAwait(false);
        var firstWait = await swarm.WaitUntilAllOnlineAsync(sequence, cancellationToken).ConfigureAwait(false);
        await log.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{swarm.Servers.Count} servers online in the client's view ({firstWait.TotalMilliseconds:F0} ms after they listened)")).ConfigureAwait(false);
        if (options.WarmUp)
        {
            var warmTimer = Stopwatch.StartNew();
            var warmed = await swarm.WarmUpAsync(sequence, config, cancellationToken).ConfigureAwait(false);
            await log.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"warmed up {warmed} servers with a short session each ({warmTimer.ElapsedMilliseconds} ms)")).ConfigureAwait(false);
        }

        await sequence.RefreshAsync(cancellationToken).ConfigureAwait(false);
        var kills = new List<ChaosKill>();
        var recoveries = new List<ChaosRecovery>();
        var gate = new Lock();
        await using var blocks = await RemoteTransformerBlocks.ConnectAsync(new TcpTransport().WithMultiplexing(), sequence, config, new RemoteSequenceOptions { Verification = new() { Rate = options.VerifyRate } }, cancellationToken).ConfigureAwait(false);
        blocks.SpanRecovered += (_, e) =>
        {
            ChaosRecovery recovery;
            lock (gate)
            {
                var kill = kills.LastOrDefault(k => k.PeerId == e.FailedPeerId);
                recovery = new ChaosRecovery(
                    e.Position, e.Blocks, e.FailedPeerId, e.Error.Message, [.. e.Replacements.Select(s => $"{s.Blocks} by {s.PeerId}")],
                    e.ReplayedTokens, e.DetectedAt, e.ResumedAt, e.DetectionToResume, e.Attempt, kill);
                recoveries.Add(recovery);
            }

            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"recovered at position {recovery.Position}: blocks {recovery.Blocks} of {recovery.FailedPeerId} now on {string.Join(", ", recovery.Replacements)}, {recovery.ReplayedTokens} tokens replayed, detection->resume {recovery.DetectionToResume.TotalMilliseconds:F1} ms{(recovery.KillToResume is { } k ? string.Create(CultureInfo.InvariantCulture, $", kill->resume {k.TotalMilliseconds:F1} ms") : string.Empty)} (attempt {recovery.Attempt})"));
        };

        var head = LanguageModelHead.Load(weights);
        var tokenizer = TokenizerLoader.Load(options.Model);
        using var lm = new CausalLanguageModel(head, blocks, tokenizer);
        await log.WriteLineAsync($"active chain: {string.Join(", ", blocks.Spans)}").ConfigureAwait(false);

        var random = new Random(options.Seed);
        var generated = new List<int>(options.NewTokens);
        var planned = options.PlannedKills;
        ChaosServer? toRestart = null;
        var waiting = TimeSpan.Zero;
        var timer = Stopwatch.StartNew();
        await foreach (var token in lm.GenerateAsync(prompt, generation, cancellationToken).ConfigureAwait(false))
        {
            generated.Add(token);

            // The step after a kill has come back (recovered): only now start the replacement process, so that its start
            // (a whole runtime and model load) does not compete with the recovery being measured.
            if (toRestart is not null)
            {
                swarm.Restart(toRestart);
                toRestart = null;
            }

            if (generated.Count % options.KillEvery != 0 || generated.Count >= options.NewTokens || kills.Count >= planned)
            {
                continue;
            }

            // Every kill starts from a whole swarm: all servers online in the client's view (and warm).
            var wait = Stopwatch.StartNew();
            await swarm.WaitUntilAllOnlineAsync(sequence, cancellationToken).ConfigureAwait(false);
            if (options.WarmUp)
            {
                await swarm.WarmUpAsync(sequence, config, cancellationToken).ConfigureAwait(false);
                await sequence.RefreshAsync(cancellationToken).ConfigureAwait(false);
            }

            waiting += wait.Elapsed;
            var chain = blocks.Spans;
            var candidates = chain.Select(s => swarm.FindRunning(s.PeerId)).OfType<ChaosServer>().Distinct().ToArray();
            if (candidates.Length == 0)
            {
                throw new InvalidOperationException($"None of the active chain's servers ({string.Join(", ", chain)}) is a process of this run.");
            }

            var victim = candidates[random.Next(candidates.Length)];
            ChaosKill kill;
            lock (gate)
            {
                kill = swarm.Kill(victim, generated.Count, [.. chain.Where(s => s.PeerId == victim.PeerId).Select(s => s.Blocks)], TimeProvider.System);
                kills.Add(kill);
            }

            toRestart = victim;
            await log.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"kill -9 {kill.ProcessId}: {victim.Name}, peer {kill.PeerId}, after {generated.Count} tokens (chain {string.Join(", ", chain.Select(s => s.Blocks))})")).ConfigureAwait(false);
        }

        var seconds = timer.Elapsed.TotalSeconds;
        await swarm.WaitForKilledAsync(options.StartupTimeout, cancellationToken).ConfigureAwait(false);
        lock (gate)
        {
            return new ChaosResult(options, prompt, expected, generated, [.. kills], [.. recoveries], seconds, waiting.TotalSeconds)
            {
                Verification = options.VerifyRate > 0 ? blocks.Verification : null,
            };
        }
    }

    /// <summary>Writes <paramref name="result"/> as JSON lines to <c>chaos-YYYYMMDD-HHMMSS.jsonl</c> in <paramref name="directory"/>.</summary>
    /// <returns>The file's path.</returns>
    public static string WriteResults(ChaosResult result, string directory)
    {
        ArgumentNullException.ThrowIfNull(result);
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, $"chaos-{DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}.jsonl");
        using var writer = new StreamWriter(path);
        ChaosReport.WriteJsonLines(result, writer);
        return path;
    }
}
