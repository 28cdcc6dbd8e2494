using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Petals.Discovery;
using Petals.Models;
using Petals.Testing;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Cli.Tests;

/// <summary>Real <c>petals dht</c> and <c>petals serve --new-swarm</c> processes on 127.0.0.1, read through a DHT node of the test's own.</summary>
public sealed class DhtCommandTests
{
    private const string ModelId = "stories260K-f32:llama-5x64-v512";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Dht_prints_its_address_keeps_its_id_with_an_identity_file_and_prints_stats_on_sigterm()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "SIGTERM is a POSIX signal.");
        var keyFile = Path.Combine(Path.GetTempPath(), $"petals-dht-{Guid.NewGuid():N}.key");
        try
        {
            var first = await RunDhtOnceAsync(["--identity", keyFile]);
            Assert.True(File.Exists(keyFile));
            var second = await RunDhtOnceAsync(["--identity", keyFile, "--port", "0"]);
            var fresh = await RunDhtOnceAsync([]);
            Assert.Equal(first.PeerId, second.PeerId);
            Assert.NotEqual(first.PeerId, fresh.PeerId);
            Assert.Matches("^[0-9a-f]{40}$", first.PeerId!);
        }
        finally
        {
            File.Delete(keyFile);
        }
    }

    [Fact]
    public async Task A_second_dht_node_joins_the_first_and_the_first_counts_the_requests_it_served()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "SIGTERM is a POSIX signal.");
        await using var boot = PetalsProcess.Start("dht");
        var bootAddress = PeerAddress.Parse((await boot.WaitForLineAsync("dht "))["dht ".Length..]);
        Assert.Equal("127.0.0.1", bootAddress.Host);
        await using (var joiner = PetalsProcess.Start("dht", "--initial-peers", bootAddress.ToString()))
        {
            await joiner.WaitForLineAsync("dht ");
            var (code, stats) = await joiner.StopAsync();
            Assert.Equal(0, code);
            Assert.True(stats.GetProperty("known_nodes").GetInt32() >= 1);
        }

        var (bootCode, bootStats) = await boot.StopAsync();
        Assert.Equal(0, bootCode);
        Assert.True(bootStats.GetProperty("requests_served").GetInt64() >= 2, bootStats.ToString()); // the ping and the self-lookup
        Assert.Equal(bootAddress.PeerId, bootStats.GetProperty("node_id").GetString());
    }

    [Theory]
    [InlineData("dht", "dht ")]
    [InlineData("serve", "listening ")]
    public async Task Sigterm_right_after_the_ready_line_still_stops_cleanly_with_stats(string command, string readyPrefix)
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "SIGTERM is a POSIX signal.");
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);

        // System.CommandLine's own handling ended such a process at once with 143 and no statistics whenever the signal
        // came before the command's first asynchronous wait (more than half of these runs failed).
        for (var run = 0; run < 6; run++)
        {
            var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Petals.Cli.dll"));
            foreach (var a in command == "serve" ? ["serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", "--threads", "1"] : new[] { "dht" })
            {
                info.ArgumentList.Add(a);
            }

            using var process = new Process { StartInfo = info };
            var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
            var signalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var outputDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is null)
                {
                    outputDone.TrySetResult();
                    return;
                }

                lines.Enqueue(e.Data);
                if (e.Data.StartsWith(readyPrefix, StringComparison.Ordinal) && !signalled.Task.IsCompleted)
                {
                    _ = Kill(process.Id, 15); // at once, from the reader: no polling delay
                    signalled.TrySetResult();
                }
            };
            Assert.True(process.Start());
            var errors = process.StandardError.ReadToEndAsync(Ct);
            process.BeginOutputReadLine();
            try
            {
                await signalled.Task.WaitAsync(Bound, Ct);
                await process.WaitForExitAsync(Ct).WaitAsync(Bound, Ct);
                await outputDone.Task.WaitAsync(Bound, Ct);
                Assert.True(process.ExitCode == 0, $"run {run}: exit code {process.ExitCode}; output: {string.Join(" | ", lines)}; errors: {await errors}");
                Assert.Contains(lines, l => l.StartsWith("stats {", StringComparison.Ordinal));
            }
            finally
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }
            }
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
#pragma warning disable SYSLIB1054 // test code: a plain import is enough
    private static extern int Kill(int pid, int signal);
#pragma warning restore SYSLIB1054

    [Fact]
    public async Task Dht_on_the_wildcard_host_warns_that_its_advertised_address_is_unreachable()
    {
        await using var node = PetalsProcess.Start(redirectInput: true, "dht", "--host", "0.0.0.0", "--stop-when-input-closes");
        Assert.Contains("@0.0.0.0:", await node.WaitForLineAsync("dht "), StringComparison.Ordinal);
        var (code, _) = await node.CloseInputAndWaitAsync();
        Assert.Equal(0, code);
        Assert.Contains("warning: listening on the wildcard host 0.0.0.0", node.Errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dht_with_stop_when_input_closes_stops_cleanly_when_its_input_ends()
    {
        await using var node = PetalsProcess.Start(redirectInput: true, "dht", "--stop-when-input-closes");
        await node.WaitForLineAsync("dht ");
        var (code, stats) = await node.CloseInputAndWaitAsync();
        Assert.Equal(0, code);
        Assert.Equal(0, stats.GetProperty("records_stored").GetInt32());
    }

    [Fact]
    public async Task Serve_with_new_swarm_announces_online_under_its_dht_id_and_offline_after_sigterm()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.SkipWhen(OperatingSystem.IsWindows(), "SIGTERM is a POSIX signal.");
        await using var serve = PetalsProcess.Start(
            "serve", "--model", TestData.Stories260KGguf, "--blocks", "1:4", "--threads", "1", "--new-swarm", "--public-name", "cli-test", "--announce-interval", "30");
        var dht = PeerAddress.Parse((await serve.WaitForLineAsync("dht "))["dht ".Length..]);
        var listening = PeerAddress.Parse((await serve.WaitForLineAsync("listening ")).Split(' ')[1]);

        using var key = PeerIdentity.Generate();
        await using var node = new DhtNode(key);
        await node.StartAsync(new TcpTransport().WithMultiplexing(), PeerAddress.Parse("tcp://127.0.0.1:0"), Ct).WaitAsync(Bound, Ct);
        Assert.Equal(1, await node.BootstrapAsync([dht], Ct).WaitAsync(Bound, Ct));
        var reader = new DhtPeerDiscovery(node);

        var blocks = await reader.GetServersAsync(ModelId, new BlockRange(1, 4), Ct).WaitAsync(Bound, Ct);
        foreach (var block in blocks)
        {
            var server = Assert.Single(block.Servers);
            Assert.Equal(dht.PeerId, server.PeerId);
            Assert.Equal(ServerState.Online, server.State);
            Assert.Equal(listening, server.Address);
            Assert.Equal(new BlockRange(1, 4), server.Span);
            Assert.Equal("cli-test", server.PublicName);
            Assert.True(server.Throughput > 0);
        }

        var (code, stats) = await serve.StopAsync();
        Assert.True(code == 0, serve.Errors);
        Assert.True(stats.GetProperty("announcements").GetInt64() >= 2, stats.ToString()); // online and offline (joining too, unless its store raced the bootstrap)
        Assert.Equal(0, stats.GetProperty("announce_failures").GetInt64());

        // The server is gone, but the reader's node holds its last word.
        var after = await reader.GetServersAsync(ModelId, new BlockRange(1, 4), Ct).WaitAsync(Bound, Ct);
        Assert.All(after, b => Assert.Equal(ServerState.Offline, Assert.Single(b.Servers).State));
    }

    [Fact]
    public async Task Serve_throughput_given_announces_it_without_measuring_eval_measures_into_the_cache_and_a_rerun_uses_the_cache()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.SkipWhen(OperatingSystem.IsWindows(), "SIGTERM is a POSIX signal.");
        var directory = Directory.CreateTempSubdirectory("petals-throughput-cli-").FullName;
        var cachePath = Path.Combine(directory, "throughput.json");
        try
        {
            // Given: announced as is, nothing measured, nothing cached.
            var (given, givenStats, givenErrors) = await ServeOnceAsync("--throughput", "123", "--throughput-cache", cachePath);
            Assert.All(given, s => Assert.Equal(123.0, s.Throughput));
            Assert.All(given, s => Assert.Equal("given", s.ThroughputMethod));
            Assert.Equal(123.0, givenStats.GetProperty("throughput").GetDouble());
            Assert.Contains("throughput 123.0 tokens/s per block (given)", givenErrors, StringComparison.Ordinal);
            Assert.False(File.Exists(cachePath));

            // eval: measured (the method is printed) and written to the cache.
            var (measured, _, measuredErrors) = await ServeOnceAsync("--throughput", "eval", "--throughput-cache", cachePath);
            Assert.Contains("tokens/s per block (measured: decode ", measuredErrors, StringComparison.Ordinal);
            Assert.True(File.Exists(cachePath));
            var announced = measured[0].Throughput;
            Assert.All(measured, s => Assert.StartsWith("measured: median of ", s.ThroughputMethod, StringComparison.Ordinal));
            Assert.True(announced > 0);

            // Default: the cached figure, not a new measurement.
            var (cached, _, cachedErrors) = await ServeOnceAsync("--throughput-cache", cachePath);
            Assert.Contains("tokens/s per block (cached)", cachedErrors, StringComparison.Ordinal);
            Assert.All(cached, s => Assert.Equal(announced, s.Throughput, 6));
            Assert.All(cached, s => Assert.StartsWith("cached: median of ", s.ThroughputMethod, StringComparison.Ordinal));

            // A corrupt cache: the operator sees a log line, the server measures again and rewrites the file.
            await File.WriteAllTextAsync(cachePath, "{ not json", TestContext.Current.CancellationToken);
            var (_, _, corruptErrors) = await ServeOnceAsync("--throughput-cache", cachePath);
            Assert.Contains($"log warning: Ignoring the throughput cache {cachePath} (", corruptErrors, StringComparison.Ordinal);
            Assert.Contains("tokens/s per block (measured: decode ", corruptErrors, StringComparison.Ordinal);
            using var rewritten = JsonDocument.Parse(await File.ReadAllTextAsync(cachePath, TestContext.Current.CancellationToken));
            Assert.Equal(JsonValueKind.Object, rewritten.RootElement.ValueKind);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Real_processes_a_bootstrap_node_three_servers_and_a_client_knowing_only_the_bootstrap_generate_as_locally_and_avoid_a_stopped_server()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.SkipWhen(OperatingSystem.IsWindows(), "SIGTERM is a POSIX signal.");
        await using var boot = PetalsProcess.Start("dht");
        var bootAddress = (await boot.WaitForLineAsync("dht "))["dht ".Length..];
        string[] spans = ["0:2", "2:5", "2:5"];
        var servers = spans.Select(span => PetalsProcess.Start(
            "serve", "--model", TestData.Stories260KGguf, "--blocks", span, "--threads", "1", "--initial-peers", bootAddress, "--public-name", "server " + span)).ToArray();
        try
        {
            var ids = new string[servers.Length];
            for (var i = 0; i < servers.Length; i++)
            {
                ids[i] = PeerAddress.Parse((await servers[i].WaitForLineAsync("dht "))["dht ".Length..]).PeerId!;
                await servers[i].WaitForLineAsync("listening ");
            }

            string[] common = ["--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "16"];
            var local = await CliRunner.RunAsync(["generate", .. common]);
            Assert.True(local.ExitCode == 0, local.Error);
            var remote = await CliRunner.RunProcessAsync(Bound, ["generate", .. common, "--initial-peers", bootAddress]);
            Assert.True(remote.ExitCode == 0, remote.Error);
            Assert.Equal(local.Output, remote.Output);

            // One of the two servers of blocks 2:5 stops: it announces offline, and the next chain goes through the other.
            var (code, _) = await servers[2].StopAsync();
            Assert.True(code == 0, servers[2].Errors);
            var status = await CliRunner.RunAsync("status", "--initial-peers", bootAddress, "--output", "json").WaitAsync(Bound, Ct);
            Assert.True(status.ExitCode == 0, status.Error);
            using (var json = JsonDocument.Parse(status.Output))
            {
                var model = Assert.Single(json.RootElement.GetProperty("models").EnumerateArray());
                var block3 = model.GetProperty("blocks").EnumerateArray().Single(b => b.GetProperty("block").GetInt32() == 3).GetProperty("servers").EnumerateArray().ToArray();
                Assert.Equal("offline", block3.Single(s => s.GetProperty("peer_id").GetString() == ids[2]).GetProperty("state").GetString());
                Assert.Equal("online", block3.Single(s => s.GetProperty("peer_id").GetString() == ids[1]).GetProperty("state").GetString());
                Assert.True(model.GetProperty("chain").GetProperty("complete").GetBoolean());
            }

            var again = await CliRunner.RunProcessAsync(Bound, ["generate", .. common, "--initial-peers", bootAddress]);
            Assert.True(again.ExitCode == 0, again.Error);
            Assert.Equal(local.Output, again.Output);
            Assert.Contains($"blocks 2:5 on {ids[1]}", again.Error, StringComparison.Ordinal);
            Assert.DoesNotContain(ids[2], again.Error, StringComparison.Ordinal);
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
    public async Task A_server_whose_dht_peer_hangs_still_stops_cleanly_on_sigterm_with_its_stats()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.SkipWhen(OperatingSystem.IsWindows(), "SIGSTOP and SIGTERM are POSIX signals.");
        await using var boot = PetalsProcess.Start("dht");
        var bootAddress = (await boot.WaitForLineAsync("dht "))["dht ".Length..];
        await using var serve = PetalsProcess.Start("serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", "--threads", "1", "--initial-peers", bootAddress);
        await serve.WaitForLineAsync("listening ");

        // The bootstrap node freezes: the offline announcement waits for its request timeout (5 s), longer than the
        // 2 s System.CommandLine allows a stopping command by default; the server must still stop cleanly.
        await boot.SignalAsync("STOP");
        try
        {
            var stopping = Stopwatch.StartNew();
            var (code, stats) = await serve.StopAsync();
            Assert.True(code == 0, $"exit {code} after {stopping.Elapsed}: {serve.Errors}");
            Assert.True(stats.GetProperty("announcements").GetInt64() >= 2, stats.ToString());
        }
        finally
        {
            await boot.SignalAsync("CONT");
        }
    }

    [Fact]
    public async Task Serve_exits_with_code_3_naming_the_initial_peers_when_none_answers()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var (code, output, error) = await CliRunner.RunAsync("serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", "--threads", "1", "--initial-peers", "127.0.0.1:1");
        Assert.Equal(3, code);
        Assert.Contains("none of the initial DHT peers answered", error, StringComparison.Ordinal);
        Assert.Contains("tls://127.0.0.1:1", error, StringComparison.Ordinal);
        Assert.DoesNotContain("listening", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--new-swarm --initial-peers 127.0.0.1:5", "not both")]
    [InlineData("--public-name lab", "--public-name needs discovery")]
    [InlineData("--insecure --identity x.key", "--identity needs discovery")] // over TLS it keeps the server's key
    [InlineData("--initial-peers quic://1.2.3.4:5", "is not a DHT address")]
    [InlineData("--new-swarm --announce-interval 0", "--announce-interval must be a positive")]
    [InlineData("--new-swarm --announce-host a/b", "--announce-host")]
    [InlineData("--new-swarm --throughput fast", "--throughput must be a positive number of tokens/s per block or 'eval', not 'fast'.")]
    [InlineData("--new-swarm --throughput -5", "--throughput must be a positive number")]
    [InlineData("--throughput 123", "--throughput needs discovery")]
    public async Task Bad_discovery_options_are_clear_errors(string options, string fragment)
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var (code, _, error) = await CliRunner.RunAsync(["serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", .. options.Split(' ')]);
        Assert.Equal(1, code);
        Assert.Contains(fragment, error, StringComparison.Ordinal);
    }

    /// <summary>Runs <c>petals serve --new-swarm</c> on blocks 1:4 with <paramref name="args"/>, reads its announcement, stops it.</summary>
    private static async Task<(IReadOnlyList<ServerInfo> Servers, JsonElement Stats, string Errors)> ServeOnceAsync(params string[] args)
    {
        await using var serve = PetalsProcess.Start(["serve", "--model", TestData.Stories260KGguf, "--blocks", "1:4", "--threads", "1", "--new-swarm", .. args]);
        var dht = PeerAddress.Parse((await serve.WaitForLineAsync("dht "))["dht ".Length..]);
        await serve.WaitForLineAsync("listening ");
        using var key = PeerIdentity.Generate();
        await using var node = new DhtNode(key);
        await node.StartAsync(new TcpTransport().WithMultiplexing(), PeerAddress.Parse("tcp://127.0.0.1:0"), Ct).WaitAsync(Bound, Ct);
        Assert.Equal(1, await node.BootstrapAsync([dht], Ct).WaitAsync(Bound, Ct));
        var blocks = await new DhtPeerDiscovery(node).GetServersAsync(ModelId, new BlockRange(1, 4), Ct).WaitAsync(Bound, Ct);
        var servers = blocks.Select(b => Assert.Single(b.Servers)).ToArray();
        var (code, stats) = await serve.StopAsync();
        Assert.True(code == 0, serve.Errors);
        return (servers, stats.Clone(), serve.Errors);
    }

    /// <summary>Runs <c>petals dht ARGS</c>, reads its address, stops it with SIGTERM and checks the stats line.</summary>
    private static async Task<PeerAddress> RunDhtOnceAsync(string[] args)
    {
        await using var process = PetalsProcess.Start(["dht", .. args]);
        var line = await process.WaitForLineAsync("dht ");
        var address = PeerAddress.Parse(line["dht ".Length..]);
        Assert.Equal("tls", address.Scheme); // TLS by default, the address pinned by the node id
        Assert.NotEqual(0, address.Port);
        var (code, stats) = await process.StopAsync();
        Assert.Equal(0, code);
        Assert.Equal(address.PeerId, stats.GetProperty("node_id").GetString());
        return address;
    }
}
