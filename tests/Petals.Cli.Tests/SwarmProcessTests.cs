using System.Diagnostics;
using System.Text.Json;
using Petals.Backends.Cpu;
using Petals.Cli.Swarm;
using Petals.Client;
using Petals.Formats;
using Petals.Inference;
using Petals.Models;
using Petals.Protocol;
using Petals.Testing;
using Petals.Formats.HuggingFace;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Cli.Tests;

/// <summary>Real `petals serve` processes on 127.0.0.1, driven by `petals swarm`, the remote client, and killed clients.</summary>
public sealed class SwarmProcessTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Swarm_of_three_server_processes_generates_exactly_what_local_generation_does()
    {
        SkipWithoutShared();
        var local = await CliRunner.RunAsync("generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "40", "--output", "json");
        Assert.True(local.ExitCode == 0, local.Error);
        var swarm = await CliRunner.RunAsync("swarm", "--model", TestData.Stories260KGguf, "--servers", "3", "--prompt", "Once upon a time", "--max-new-tokens", "40", "--output", "json", "--threads", "1");
        Assert.True(swarm.ExitCode == 0, swarm.Error);

        var lines = swarm.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        using var expected = JsonDocument.Parse(local.Output);
        using var generated = JsonDocument.Parse(lines[0]);
        Assert.Equal(
            expected.RootElement.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()),
            generated.RootElement.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(expected.RootElement.GetProperty("text").GetString(), generated.RootElement.GetProperty("text").GetString());

        using var stats = JsonDocument.Parse(lines[1]);
        var servers = stats.RootElement.GetProperty("servers").EnumerateArray().ToArray();
        Assert.Equal(["0:2", "2:4", "4:5"], servers.Select(s => s.GetProperty("blocks").GetString()));
        Assert.All(servers, s => Assert.True(s.GetProperty("stopped_cleanly").GetBoolean()));
        Assert.All(servers, s => Assert.True(s.GetProperty("stats").GetProperty("steps").GetInt64() >= 40));
        Assert.Contains("3 servers found through the DHT", swarm.Error, StringComparison.Ordinal);

        // The servers joined through the bootstrap node, and the client found each of them online there.
        var ids = servers.Select(s => s.GetProperty("peer_id").GetString()).ToArray();
        Assert.All(ids, id => Assert.Matches("^[0-9a-f]{40}$", id));
        Assert.Equal(3, ids.Distinct().Count());
        Assert.All(servers, s => Assert.InRange(s.GetProperty("usable_ms").GetDouble(), 1, 120_000));
        Assert.All(servers, s => Assert.True(s.GetProperty("stats").GetProperty("announcements").GetInt64() >= 3));
        var bootstrap = stats.RootElement.GetProperty("bootstrap");
        Assert.Matches("^tls://[0-9a-f]{40}@127", bootstrap.GetProperty("address").GetString());
        Assert.True(bootstrap.GetProperty("stats").GetProperty("requests_served").GetInt64() > 0);
        Assert.Equal(3, bootstrap.GetProperty("stats").GetProperty("known_nodes").GetInt32()); // the servers; the client's node runs in client mode
    }

    [Fact]
    public async Task Generate_with_an_unreachable_peer_fails_with_exit_code_3_naming_it()
    {
        SkipWithoutShared();
        var (code, _, error) = await CliRunner.RunAsync("generate", "--model", TestData.Stories260KGguf, "--peers", "127.0.0.1:1", "--prompt", "Hi");
        Assert.Equal(3, code);
        Assert.Contains("127.0.0.1:1", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bad_peer_lists_and_server_counts_are_input_errors()
    {
        SkipWithoutShared();
        var peers = await CliRunner.RunAsync("generate", "--model", TestData.Stories260KGguf, "--peers", "udp://x:1", "--prompt", "Hi");
        Assert.Equal(1, peers.ExitCode);
        Assert.Contains("'udp://x:1' is not a server address", peers.Error, StringComparison.Ordinal);
        var servers = await CliRunner.RunAsync("swarm", "--model", TestData.Stories260KGguf, "--servers", "6");
        Assert.Equal(1, servers.ExitCode);
        Assert.Contains("--servers must be between 1 and the model's 5 blocks", servers.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_random_twelve_block_model_split_four_four_four_over_processes_matches_local_hidden_states()
    {
        using var dir = TestData.CreateTempDirectory();
        var config = new ModelConfig
        {
            HiddenSize = 64, IntermediateSize = 160, NumLayers = 12, NumHeads = 4, NumKeyValueHeads = 2, HeadDim = 16,
            VocabSize = 50, RmsNormEps = 1e-5, MaxPositionEmbeddings = 128, BosTokenId = 1, EosTokenIds = [2],
        };
        RandomLlamaCheckpoint.Write(dir.Path, config, seed: 21);
        var servers = new List<ServerProcess>();
        try
        {
            foreach (var span in new[] { "0:4", "4:8", "8:12" })
            {
                servers.Add(ServerProcess.Start($"server {span}", ["--model", dir.Path, "--blocks", span, "--host", "127.0.0.1", "--port", "0", "--threads", "1"]));
            }

            var addresses = await Task.WhenAll(servers.Select(s => s.WaitUntilListeningAsync(Bound, Ct)));
            await using var remote = await RemoteTransformerBlocks.ConnectAsync(new TcpTransport().WithMultiplexing(), addresses, config, ModelIdentity.Compute(dir.Path, config), cancellationToken: Ct);
            using var weights = ModelLoader.Open(dir.Path);
            using var local = new LocalTransformerBlocks([new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 }).Create(weights, new BlockRange(0, 12))]);
            await using var remoteSession = await remote.OpenSessionAsync(2, 32, Ct);
            await using var localSession = await local.OpenSessionAsync(2, 32, Ct);
            var random = new Random(12);
            var worst = 0f;
            foreach (var tokens in new[] { 6, 1, 1, 1, 4 })
            {
                var input = Enumerable.Range(0, 2 * tokens * config.HiddenSize).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
                var theirs = input.ToArray();
                var ours = input.ToArray();
                await remoteSession.ForwardAsync(theirs, tokens, Ct);
                await localSession.ForwardAsync(ours, tokens, Ct);
                worst = Math.Max(worst, ours.Zip(theirs, (a, b) => Math.Abs(a - b)).Max());
            }

            Assert.True(worst <= 1e-5f, $"largest difference {worst}");
        }
        finally
        {
            foreach (var server in servers)
            {
                await server.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task A_killed_client_releases_its_cache_and_a_frozen_one_is_freed_by_the_idle_timeout()
    {
        SkipWithoutShared();
        await using var server = ServerProcess.Start("server", ["--model", TestData.Stories260KGguf, "--blocks", "0:5", "--host", "127.0.0.1", "--port", "0", "--cache-tokens", "4096", "--idle-timeout", "2"]);
        var address = await server.WaitUntilListeningAsync(Bound, Ct);
        string modelId;
        using (var weights = ModelLoader.Open(TestData.Stories260KGguf))
        {
            modelId = ModelIdentity.Compute(TestData.Stories260KGguf, weights.Config);
        }

        Assert.Equal(4096ul, await CacheTokensLeftAsync(address, modelId));

        // Killed: the kernel closes its connection, the server frees the session at once.
        await using (var client = await StartFrozenClientAsync(address))
        {
            Assert.True(await CacheTokensLeftAsync(address, modelId) < 4096ul, "the frozen client holds a session");
            client.Kill();
            await WaitForCacheAsync(address, modelId, 4096ul, TimeSpan.FromSeconds(30));
        }

        // Frozen (SIGSTOP): the connection stays open, the idle timeout (2 s) frees the session.
        await using (var client = await StartFrozenClientAsync(address))
        {
            Assert.True(await CacheTokensLeftAsync(address, modelId) < 4096ul, "the frozen client holds a session");
            await WaitForCacheAsync(address, modelId, 4096ul, TimeSpan.FromSeconds(30));
            Assert.True(client.SinceStopped >= TimeSpan.FromSeconds(1), $"freed {client.SinceStopped} after the client froze: before the 2 s idle timeout");
        }
    }

    [Fact]
    public async Task The_servers_of_a_killed_swarm_stop_with_it_instead_of_running_on()
    {
        SkipWithoutShared();
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "Petals.Cli.dll"), "swarm", "--model", TestData.Stories260KGguf, "--servers", "2", "--prompt", "Once upon a time", "--max-new-tokens", "400", "--threads", "1" })
        {
            info.ArgumentList.Add(a);
        }

        using var swarm = Process.Start(info)!;
        _ = swarm.StandardOutput.ReadToEndAsync(Ct);
        var pids = new List<int>();
        try
        {
            var deadline = Stopwatch.StartNew();
            while (true)
            {
                Assert.True(deadline.Elapsed < Bound, "the swarm did not get ready");
                var line = await swarm.StandardError.ReadLineAsync(Ct).AsTask().WaitAsync(Bound, Ct);
                Assert.True(line is not null, "the swarm ended before its servers were ready");
                if (System.Text.RegularExpressions.Regex.Match(line, @"\(pid (\d+),") is { Success: true } match)
                {
                    pids.Add(int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
                }

                if (line.Contains("servers found through the DHT", StringComparison.Ordinal))
                {
                    break;
                }
            }

            Assert.Equal(3, pids.Count); // the bootstrap node and two servers

            // Killed (no chance to clean up, as in a crash or an OOM kill): the servers must notice and stop.
            swarm.Kill();
            await swarm.WaitForExitAsync(Ct).WaitAsync(Bound, Ct);
            var stopped = Stopwatch.StartNew();
            while (pids.Any(IsRunning))
            {
                Assert.True(stopped.Elapsed < TimeSpan.FromSeconds(30), $"processes {string.Join(", ", pids.Where(IsRunning))} still run 30 s after their swarm was killed");
                await Task.Delay(100, Ct);
            }
        }
        finally
        {
            foreach (var pid in pids.Where(IsRunning))
            {
                _ = Signal(pid, 9);
            }
        }
    }

    /// <summary>Whether the process runs (a zombie waiting to be reaped counts as ended).</summary>
    private static bool IsRunning(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..][0] is not ('Z' or 'X');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static async Task WaitForCacheAsync(PeerAddress address, string modelId, ulong expected, TimeSpan within)
    {
        var deadline = Stopwatch.StartNew();
        ulong left;
        while ((left = await CacheTokensLeftAsync(address, modelId)) != expected)
        {
            Assert.True(deadline.Elapsed < within, $"cache tokens left {left}, expected {expected} within {within}");
            await Task.Delay(100, Ct);
        }
    }

    private static Task<ulong> CacheTokensLeftAsync(PeerAddress address, string modelId) => InfoProbe.CacheTokensLeftAsync(address, modelId);

    /// <summary>Starts `petals generate --peers` as a process and stops it (SIGSTOP) as soon as it printed its first generated piece.</summary>
    private static async Task<FrozenClient> StartFrozenClientAsync(PeerAddress address)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "Petals.Cli.dll"), "generate", "--model", TestData.Stories260KGguf, "--peers", address.ToString(), "--prompt", "Once upon a time", "--max-new-tokens", "400" })
        {
            info.ArgumentList.Add(a);
        }

        var process = Process.Start(info)!;
        _ = process.StandardError.ReadToEndAsync(Ct);
        var buffer = new char[64];
        var seen = new System.Text.StringBuilder();
        var deadline = Stopwatch.StartNew();
        while (seen.Length <= "Once upon a time".Length)
        {
            Assert.True(deadline.Elapsed < Bound, "the client printed nothing");
            var n = await process.StandardOutput.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct);
            Assert.True(n > 0, $"the client ended before generating: {seen}");
            seen.Append(buffer, 0, n);
        }

        var stopped = Stopwatch.StartNew();
        Assert.Equal(0, Signal(process.Id, 19)); // SIGSTOP
        return new FrozenClient(process, stopped);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
#pragma warning disable SYSLIB1054 // test code: a plain import is enough
    private static extern int Signal(int pid, int signal);
#pragma warning restore SYSLIB1054

    private sealed class FrozenClient(Process process, Stopwatch stopped) : IAsyncDisposable
    {
        public TimeSpan SinceStopped => stopped.Elapsed;

        public void Kill() => process.Kill(entireProcessTree: true);

        public async ValueTask DisposeAsync()
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }

            await process.WaitForExitAsync(CancellationToken.None).WaitAsync(Bound);
            process.Dispose();
        }
    }

    private static void SkipWithoutShared() => GenerateCommandTests.SkipWithoutShared();

    /// <summary>One info call on a fresh connection.</summary>
    private sealed class InfoProbe : IProtocolMessageHandler
    {
        private readonly TaskCompletionSource<InfoResponse> _info = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public static async Task<ulong> CacheTokensLeftAsync(PeerAddress address, string modelId)
        {
            await using var connection = await ProtocolConnection.ConnectAsync(new TcpTransport().WithMultiplexing(), address, new ConnectionPreamble("probe", modelId), cancellationToken: Ct).WaitAsync(Bound, Ct);
            var probe = new InfoProbe();
            var run = connection.RunAsync(probe, Ct);
            await connection.SendAsync(connection.NewStreamId(), new InfoRequest(), Ct);
            var info = await probe._info.Task.WaitAsync(Bound, Ct);
            return info.CacheTokensLeft;
        }

        public ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken)
        {
            if (message is InfoResponse info)
            {
                _info.TrySetResult(info);
            }
            else
            {
                _info.TrySetException(new InvalidOperationException($"info answered with {message}"));
            }

            return ValueTask.CompletedTask;
        }

        public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure) => _info.TrySetException(failure);
    }
}
