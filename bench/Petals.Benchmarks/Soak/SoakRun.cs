using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Petals.Cli.Swarm;
using Petals.Client;
using Petals.Discovery;
using Petals.Formats;
using Petals.Generation;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Benchmarks.Soak;

/// <summary>
/// The hostile-client soak (issue 12): real <c>petals dht</c> and <c>petals serve</c> processes on 127.0.0.1, hostile
/// clients speaking the real wire protocol in phases, and every few seconds the server's and DHT node's RSS and open fds
/// with the outcome of a normal client's short generation.
/// </summary>
internal static class SoakRun
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    public static async Task<int> RunAsync(SoakOptions o)
    {
        var modelPath = Path.GetFullPath(o.Model);
        using var weights = ModelLoader.Open(modelPath);
        var config = weights.Config;
        var modelId = ModelIdentity.Compute(modelPath, config);
        var stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        StreamWriter? jsonl = null;
        if (o.Results is { } dir)
        {
            Directory.CreateDirectory(dir);
            var file = Path.Combine(dir, $"{o.Label}-{stamp}.jsonl");
            jsonl = new StreamWriter(file) { AutoFlush = true };
            Console.WriteLine($"results: {file}");
        }

        var clock = Stopwatch.StartNew();

        // The hostile clients write raw protocol bytes over plain TCP, one connection per stream, so both processes run
        // --insecure --no-multiplex: the limits under test live in the listener and the block server, below or beside
        // TLS and the multiplexer, and hold the same way there.
        string[] plainWire = ["--insecure", "--no-multiplex"];
        await using var dht = ServerProcess.Start("dht", "dht", "dht ", ["--host", "127.0.0.1", "--port", "0", .. plainWire, .. o.DhtArgs]);
        var dhtAddress = await dht.WaitUntilListeningAsync(o.StartupTimeout, CancellationToken.None).ConfigureAwait(false);
        await using var server = ServerProcess.Start("server",
        [
            "--model", modelPath, "--blocks", $"0:{config.NumLayers}", "--host", "127.0.0.1", "--port", "0",
            "--initial-peers", dhtAddress.ToString(), "--threads", "1", .. plainWire, .. o.ServeArgs,
        ]);
        var serverAddress = await server.WaitUntilListeningAsync(o.StartupTimeout, CancellationToken.None).ConfigureAwait(false);
        var serverPeer = server.DhtAddress?.PeerId;
        Console.WriteLine($"dht {dhtAddress} (pid {dht.ProcessId}); server {serverAddress} peer {serverPeer} (pid {server.ProcessId}); serve args: {string.Join(' ', o.ServeArgs)}");
        Console.WriteLine($"phases: {string.Join(", ", o.Phases)}, {o.PhaseDuration.TotalSeconds:0} s each; a sample every {o.ReportEvery.TotalSeconds:0.#} s");

        using var probeStop = new CancellationTokenSource();
        var probe = new NormalClient(serverAddress, weights, config, modelId, o.ProbeTimeout);
        var probing = probe.RunAsync(probeStop.Token);
        var failed = false;
        try
        {
            foreach (var phase in o.Phases)
            {
                var counters = new PhaseCounters();
                using var stop = new CancellationTokenSource();
                var context = new PhaseContext(o, serverAddress, dhtAddress, serverPeer, modelId, config, counters);
                var hostile = Task.Run(() => RunPhaseAsync(phase, context, stop.Token), CancellationToken.None);
                var phaseClock = Stopwatch.StartNew();
                while (phaseClock.Elapsed < o.PhaseDuration)
                {
                    await Task.Delay(o.ReportEvery).ConfigureAwait(false);
                    var sample = Sample(clock.Elapsed, phase, server, dht, probe.TakeWindow(), counters);
                    Console.WriteLine(sample.Text);
                    jsonl?.WriteLine(JsonSerializer.Serialize(sample.Json, Json));
                    if (server.ExitCode is not null)
                    {
                        Console.WriteLine(server.Describe("EXITED during the soak"));
                        failed = true;
                        break;
                    }
                }

                await stop.CancelAsync().ConfigureAwait(false);
                try
                {
                    await hostile.WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
                }
#pragma warning disable CA1031 // A hostile client's own failure is reported, not fatal to the soak.
                catch (Exception e)
#pragma warning restore CA1031
                {
                    counters.FirstError ??= e.GetType().Name + ": " + e.Message;
                }

                var summary = $"phase {phase} done: {counters}{(counters.FirstError is { } err ? $"; first error: {err}" : string.Empty)}";
                Console.WriteLine(summary);
                jsonl?.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?> { ["phase_done"] = phase, ["counters"] = counters.Snapshot(), ["first_error"] = counters.FirstError }, Json));
                if (failed)
                {
                    break;
                }
            }

            // After every hostile client is gone: what the processes keep.
            await Task.Delay(o.ReportEvery).ConfigureAwait(false);
            var after = Sample(clock.Elapsed, "after", server, dht, probe.TakeWindow(), new PhaseCounters());
            Console.WriteLine(after.Text);
            jsonl?.WriteLine(JsonSerializer.Serialize(after.Json, Json));
        }
        finally
        {
            await probeStop.CancelAsync().ConfigureAwait(false);
            await probing.ConfigureAwait(false);
            var stopped = await server.StopAsync(TimeSpan.FromSeconds(15)).ConfigureAwait(false);
            Console.WriteLine($"server stopped {(stopped ? "cleanly" : "by SIGKILL")}, exit code {server.ExitCode}; stats {server.Stats?.GetRawText() ?? "(none)"}");
            await dht.StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            Console.WriteLine($"normal client over the whole run: {probe.Total}");
            jsonl?.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?> { ["server_exit"] = server.ExitCode, ["server_stats"] = server.Stats, ["normal_client"] = probe.Total.ToString() }, Json));
            jsonl?.Dispose();
        }

        return failed ? 4 : 0;
    }

    private static (string Text, Dictionary<string, object?> Json) Sample(TimeSpan at, string phase, ServerProcess server, ServerProcess dht, ProbeWindow probe, PhaseCounters counters)
    {
        var (sRss, sHwm, sFds) = ProcessFigures(server.ProcessId);
        var (dRss, _, dFds) = ProcessFigures(dht.ProcessId);
        var text = string.Create(CultureInfo.InvariantCulture,
            $"[{at.TotalSeconds,6:0.0} s] {phase,-10} server rss {sRss,5} MB (peak {sHwm} MB) fds {sFds,5} | dht rss {dRss,4} MB fds {dFds,4} | normal {probe} | {counters}");
        var json = new Dictionary<string, object?>
        {
            ["t_s"] = Math.Round(at.TotalSeconds, 1),
            ["phase"] = phase,
            ["server_rss_mb"] = sRss,
            ["server_peak_rss_mb"] = sHwm,
            ["server_fds"] = sFds,
            ["dht_rss_mb"] = dRss,
            ["dht_fds"] = dFds,
            ["normal_ok"] = probe.Ok,
            ["normal_failed"] = probe.Failed,
            ["normal_median_ms"] = probe.MedianMs,
            ["normal_last_error"] = probe.LastError,
            ["counters"] = counters.Snapshot(),
        };
        return (text, json);
    }

    /// <summary>RSS and peak RSS in MB (VmRSS, VmHWM of /proc/PID/status) and open fds (/proc/PID/fd); -1 when the process is gone.</summary>
    private static (long Rss, long Peak, int Fds) ProcessFigures(int pid)
    {
        try
        {
            long rss = -1, peak = -1;
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    rss = Kb(line) / 1024;
                }
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    peak = Kb(line) / 1024;
                }
            }

            return (rss, peak, Directory.GetFileSystemEntries($"/proc/{pid}/fd").Length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (-1, -1, -1);
        }

        static long Kb(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    private sealed record PhaseContext(SoakOptions Options, PeerAddress Server, PeerAddress Dht, string? ServerPeer, string ModelId, ModelConfig Config, PhaseCounters Counters);

    private static Task RunPhaseAsync(string phase, PhaseContext c, CancellationToken stop) => phase switch
    {
        "baseline" => Task.Delay(Timeout.Infinite, stop).ContinueWith(static _ => { }, TaskScheduler.Default),
        "idle" => IdleAsync(c, stop),
        "slowloris" => SlowlorisAsync(c, stop),
        "partial" => PartialAsync(c, stop),
        "hog" => HogAsync(c, stop),
        "nan" => NanAsync(c, stop),
        "dht-flood" => DhtFloodAsync(c, stop),
        _ => throw new ArgumentException($"unknown phase {phase}"),
    };

    /// <summary>Connections that complete the handshake and then send nothing; counts how many the server closes.</summary>
    private static async Task IdleAsync(PhaseContext c, CancellationToken stop)
    {
        var connections = new ConcurrentBag<ProtocolConnection>();
        var runs = new ConcurrentBag<Task>();
        var transport = new RawTcpTransport(c.Options.AttackerAddress);
        var handler = new StreamRouter();
        try
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, c.Options.IdleConnections), new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = stop }, async (_, ct) =>
            {
                try
                {
                    var connection = await ProtocolConnection.ConnectAsync(transport, c.Server, new ConnectionPreamble("soak-idle", c.ModelId), cancellationToken: ct).ConfigureAwait(false);
                    connections.Add(connection);
                    c.Counters.Add("opened");
                    runs.Add(WatchAsync(connection.RunAsync(handler, CancellationToken.None), c.Counters, stop));
                }
                catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                {
                    c.Counters.Add("refused");
                    c.Counters.FirstError ??= e.Message;
                }
            }).ConfigureAwait(false);
            await Task.Delay(Timeout.Infinite, stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            c.Counters.Set("open_at_end", runs.Count(r => !r.IsCompleted));
            foreach (var connection in connections)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
        }

        static async Task WatchAsync(Task run, PhaseCounters counters, CancellationToken stop)
        {
            try
            {
                await run.ConfigureAwait(false);
            }
#pragma warning disable CA1031 // Only whether the server closed it matters.
            catch (Exception)
#pragma warning restore CA1031
            {
            }

            if (!stop.IsCancellationRequested)
            {
                counters.Add("closed_by_server");
            }
        }
    }

    /// <summary>Connections that trickle one message byte per second after the handshake (each byte a complete transport frame).</summary>
    private static async Task SlowlorisAsync(PhaseContext c, CancellationToken stop)
    {
        var clients = new ConcurrentBag<RawProtocolClient>();
        try
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, c.Options.Slowloris), new ParallelOptions { MaxDegreeOfParallelism = c.Options.Slowloris, CancellationToken = stop }, async (_, ct) =>
            {
                RawProtocolClient client;
                try
                {
                    client = await RawProtocolClient.ConnectAsync(c.Server, c.ModelId, c.Options.AttackerAddress, ct).ConfigureAwait(false);
                    clients.Add(client);
                    c.Counters.Add("opened");
                }
                catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                {
                    c.Counters.Add("refused");
                    c.Counters.FirstError ??= e.Message;
                    return;
                }

                // An info request frame whose header claims a 4 KiB payload, sent a byte a second.
                var message = RawProtocolClient.Header(4096, FrameType.InfoRequest, FrameFlags.None, 1).Concat(new byte[4096]).ToArray();
                for (var i = 0; i < message.Length && !ct.IsCancellationRequested; i++)
                {
                    if (!await client.TryWriteAsync(message.AsMemory(i, 1), ct).ConfigureAwait(false) || client.IsClosed)
                    {
                        c.Counters.Add("closed_by_server");
                        return;
                    }

                    c.Counters.Add("bytes_sent");
                    await Task.Delay(TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
                }
            }).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            c.Counters.Set("open_at_end", clients.Count(k => !k.IsClosed));
            foreach (var client in clients)
            {
                await client.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Connections that each send all but 100 KiB of a chunked 64 MiB forward request, then stall.</summary>
    private static async Task PartialAsync(PhaseContext c, CancellationToken stop)
    {
        var clients = new ConcurrentBag<RawProtocolClient>();
        const int Declared = 64 << 20;
        const int Withheld = 100 << 10;
        try
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, c.Options.Partial), new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = stop }, async (_, ct) =>
            {
                RawProtocolClient client;
                try
                {
                    client = await RawProtocolClient.ConnectAsync(c.Server, c.ModelId, c.Options.AttackerAddress, ct).ConfigureAwait(false);
                    clients.Add(client);
                    c.Counters.Add("opened");
                }
                catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                {
                    c.Counters.Add("refused");
                    c.Counters.FirstError ??= e.Message;
                    return;
                }

                var limit = client.FrameLimit;
                var zeros = new byte[limit];
                var sent = limit - 4;
                var ok = await client.TryWriteAsync(client.FirstChunkHeader(FrameType.ForwardRequest, 1, Declared), ct).ConfigureAwait(false)
                    && await client.TryWriteAsync(zeros.AsMemory(0, limit - 4), ct).ConfigureAwait(false);
                while (ok && sent < Declared - Withheld)
                {
                    var part = Math.Min(limit, Declared - Withheld - sent);
                    ok = await client.TryWriteAsync(RawProtocolClient.Header(part, FrameType.Continuation, FrameFlags.More, 1), ct).ConfigureAwait(false)
                        && await client.TryWriteAsync(zeros.AsMemory(0, part), ct).ConfigureAwait(false);
                    sent += part;
                }

                c.Counters.Add(ok ? "stalled_at_63.9MiB" : "closed_by_server");
                c.Counters.Add("mib_sent", sent >> 20);
            }).ConfigureAwait(false);
            await Task.Delay(Timeout.Infinite, stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            c.Counters.Set("open_at_end", clients.Count(k => !k.IsClosed));
            foreach (var client in clients)
            {
                await client.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// A greedy peer (its own source address): many sessions of the server's longest length, each stepping every few
    /// seconds to stay within the idle timeout, reopened whenever refused.
    /// </summary>
    private static async Task HogAsync(PhaseContext c, CancellationToken stop)
    {
        await using var connection = await ProtocolConnection.ConnectAsync(new RawTcpTransport(c.Options.HogAddress), c.Server, new ConnectionPreamble("soak-hog", c.ModelId), cancellationToken: stop).ConfigureAwait(false);
        var router = new StreamRouter();
        var run = connection.RunAsync(router, CancellationToken.None);
        var info = await InfoAsync(connection, router, stop).ConfigureAwait(false);
        var held = 0;
        var sessions = Enumerable.Range(0, c.Options.HogSessions).Select(async s =>
        {
            var random = new Random(s);
            while (!stop.IsCancellationRequested)
            {
                var stream = connection.NewStreamId();
                var holding = false;
                try
                {
                    await connection.SendAsync(stream, new InferenceOpen(Guid.NewGuid(), info.Blocks, info.MaxSessionLength, WireCodec.Fp32), stop).ConfigureAwait(false);
                    for (var position = 0; position < info.MaxSessionLength - 1 && !stop.IsCancellationRequested; position++)
                    {
                        await connection.SendAsync(stream, new InferenceStep((ulong)position + 1, position, Hidden(info.HiddenSize, random)), stop).ConfigureAwait(false);
                        var reply = await router.NextAsync(stream, TimeSpan.FromSeconds(90), stop).ConfigureAwait(false);
                        if (reply is ErrorMessage error)
                        {
                            c.Counters.Add("refused_" + error.Code.Value);
                            break;
                        }

                        if (!holding)
                        {
                            holding = true;
                            c.Counters.Set("sessions_held", Interlocked.Increment(ref held));
                        }

                        c.Counters.Add("steps_ok");
                        await Task.Delay(c.Options.HogStep, stop).ConfigureAwait(false);
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                }
                catch (Exception e) when (e is TimeoutException or ProtocolException or TransportException or IOException)
                {
                    c.Counters.Add("failed");
                    c.Counters.FirstError ??= e.Message;
                }
                finally
                {
                    if (holding)
                    {
                        c.Counters.Set("sessions_held", Interlocked.Decrement(ref held));
                    }
                }

                if (!stop.IsCancellationRequested)
                {
                    await Task.Delay(c.Options.HogStep, stop).ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
                }
            }
        }).ToArray();
        await Task.WhenAll(sessions).ConfigureAwait(false);
        await connection.DisposeAsync().ConfigureAwait(false);
        await run.ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
    }

    /// <summary>Steps and forwards with NaN/±Inf among valid steps of one session: counts refusals, computed poison, and whether the session survives.</summary>
    private static async Task NanAsync(PhaseContext c, CancellationToken stop)
    {
        await using var connection = await ProtocolConnection.ConnectAsync(new RawTcpTransport(c.Options.NanAddress), c.Server, new ConnectionPreamble("soak-nan", c.ModelId), cancellationToken: stop).ConfigureAwait(false);
        var router = new StreamRouter();
        var run = connection.RunAsync(router, CancellationToken.None);
        var info = await InfoAsync(connection, router, stop).ConfigureAwait(false);
        var random = new Random(5);
        float[] poisons = [float.NaN, float.PositiveInfinity, float.NegativeInfinity];
        var interval = TimeSpan.FromSeconds(1.0 / c.Options.NanPerSecond);
        uint stream = 0;
        var position = 0;
        ulong stepId = 0;
        try
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                if (stream == 0 || position >= 60)
                {
                    stream = connection.NewStreamId();
                    position = 0;
                    await connection.SendAsync(stream, new InferenceOpen(Guid.NewGuid(), info.Blocks, 64, WireCodec.Fp32), stop).ConfigureAwait(false);
                    c.Counters.Add("sessions_opened");
                }

                var poisoned = i % 10 != 9;
                var hidden = Hidden(info.HiddenSize, random);
                if (poisoned)
                {
                    var values = hidden.ToArray();
                    values[random.Next(values.Length)] = poisons[i % 3];
                    hidden = WireTensor.FromValues(new TensorShape(1, 1, info.HiddenSize), values);
                }

                if (poisoned && i % 5 == 0)
                {
                    // A stateless forward request with the poison.
                    var forward = connection.NewStreamId();
                    await connection.SendAsync(forward, new ForwardRequest(info.Blocks, WireCodec.Fp32, hidden), stop).ConfigureAwait(false);
                    var answer = await router.NextAsync(forward, TimeSpan.FromSeconds(30), stop).ConfigureAwait(false);
                    c.Counters.Add(answer is ErrorMessage e ? "forward_refused_" + e.Code.Value : "forward_poison_computed");
                }
                else
                {
                    await connection.SendAsync(stream, new InferenceStep(++stepId, position, hidden), stop).ConfigureAwait(false);
                    var reply = await router.NextAsync(stream, TimeSpan.FromSeconds(30), stop).ConfigureAwait(false);
                    switch (reply)
                    {
                        case ErrorMessage e when e.Code == ProtocolErrorCode.NonFiniteInput:
                            c.Counters.Add("step_refused_non_finite_input");
                            break;
                        case ErrorMessage e:
                            c.Counters.Add((poisoned ? "poison_" : "valid_") + "step_error_" + e.Code.Value);
                            stream = 0; // the session ended
                            break;
                        default:
                            position++;
                            c.Counters.Add(poisoned ? "step_poison_computed" : "step_valid_ok");
                            break;
                    }
                }

                await Task.Delay(interval, stop).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }

        await connection.DisposeAsync().ConfigureAwait(false);
        await run.ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
    }

    /// <summary>
    /// Records from a few throwaway identities stored as fast as the DHT takes them; each sample says whether the real
    /// server's announcement is still found.
    /// </summary>
    private static async Task DhtFloodAsync(PhaseContext c, CancellationToken stop)
    {
        var nodes = new List<DhtNode>();
        try
        {
            for (var i = 0; i < c.Options.DhtIdentities; i++)
            {
                var node = new DhtNode(PeerIdentity.Generate());
                await node.StartAsync(new TcpTransport(), PeerAddress.Parse("tcp://127.0.0.1:0"), stop).ConfigureAwait(false);
                await node.BootstrapAsync([c.Dht], stop).ConfigureAwait(false);
                nodes.Add(node);
            }

            var watch = Task.Run(async () =>
            {
                var discovery = new DhtPeerDiscovery(nodes[0]);
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        var servers = await discovery.GetServersAsync(c.ModelId, new BlockRange(0, c.Config.NumLayers), stop).ConfigureAwait(false);
                        var seen = servers.Count > 0 && servers[0].Servers.Any(s => s.PeerId == c.ServerPeer);
                        c.Counters.Set("announcement_found", seen ? 1 : 0);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        c.Counters.Set("announcement_found", 0);
                    }

                    await Task.Delay(TimeSpan.FromSeconds(1), stop).ConfigureAwait(false);
                }
            }, CancellationToken.None);

            var timer = Stopwatch.StartNew();
            var value = new byte[200];
            await Parallel.ForEachAsync(Enumerable.Range(0, c.Options.DhtRecords), new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = stop }, async (i, ct) =>
            {
                var node = nodes[i % nodes.Count];
                try
                {
                    var result = await node.StoreAsync(DhtRecord.Create(node.Identity, $"soak-flood-{i}", value, DateTimeOffset.UtcNow.AddHours(1)), ct).ConfigureAwait(false);
                    c.Counters.Add(result.AcceptedCount > 0 ? "records_stored" : "records_refused");
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    c.Counters.Add("records_failed");
                    c.Counters.FirstError ??= e.Message;
                }

                c.Counters.Set("flood_ms", timer.ElapsedMilliseconds);
            }).ConfigureAwait(false);
            await Task.Delay(Timeout.Infinite, stop).ConfigureAwait(false);
            await watch.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static async Task<InfoResponse> InfoAsync(ProtocolConnection connection, StreamRouter router, CancellationToken stop)
    {
        var id = connection.NewStreamId();
        await connection.SendAsync(id, InfoRequest.Instance, stop).ConfigureAwait(false);
        return (InfoResponse)await router.NextAsync(id, TimeSpan.FromSeconds(30), stop).ConfigureAwait(false);
    }

    private static WireTensor Hidden(int size, Random random)
    {
        var values = new float[size];
        for (var i = 0; i < size; i++)
        {
            values[i] = (float)(random.NextDouble() - 0.5);
        }

        return WireTensor.FromValues(new TensorShape(1, 1, size), values);
    }
}
