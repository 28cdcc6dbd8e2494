using Petals.Cli.Commands;
using Petals.Cli.Swarm;
using Petals.Discovery;
using Petals.Formats;
using Petals.Models;
using Petals.Protocol;
using Petals.Testing;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Cli.Tests;

/// <summary>
/// The commands speak TLS bound to each peer's one key by default: real <c>petals dht</c> and <c>petals serve</c>
/// processes on 127.0.0.1, clients run in-process, and fake servers that present another key or claim another id.
/// </summary>
public sealed class TlsByDefaultTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Dht_serve_generate_and_status_speak_tls_with_one_key_per_peer_and_print_the_identity_met()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var dht = ServerProcess.Start("bootstrap", "dht", "dht ", ["--host", "127.0.0.1", "--port", "0"]);
        var bootstrap = await dht.WaitUntilListeningAsync(Bound, Ct);
        Assert.Equal("tls", bootstrap.Scheme);
        Assert.Matches("^[0-9a-f]{40}$", bootstrap.PeerId);

        await using var serve = ServerProcess.Start("server", ["--model", TestData.Stories260KGguf, "--blocks", "0:5", "--host", "127.0.0.1", "--port", "0", "--threads", "1", "--initial-peers", bootstrap.ToString()]);
        var listening = await serve.WaitUntilListeningAsync(Bound, Ct);
        Assert.Equal("tls", listening.Scheme);
        Assert.Matches("^[0-9a-f]{64}$", listening.PeerId);

        // One key: the server's DHT node id is the first 40 digits of the key id its TLS listener proves.
        var serverDht = Assert.NotNull(serve.DhtAddress);
        Assert.Equal("tls", serverDht.Scheme);
        Assert.StartsWith(serverDht.PeerId!, listening.PeerId, StringComparison.Ordinal);

        string[] common = ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "8"];
        var local = await CliRunner.RunAsync(common);
        Assert.True(local.ExitCode == 0, local.Error);

        // Found through the DHT (joined by host:port alone): pinned to the announced id, and the bootstrap's key printed.
        var found = await CliRunner.RunAsync([.. common, "--initial-peers", $"127.0.0.1:{bootstrap.Port}"]).WaitAsync(Bound, Ct);
        Assert.True(found.ExitCode == 0, found.Error);
        Assert.Equal(local.Output, found.Output);
        Assert.Contains($"connected to 127.0.0.1:{bootstrap.Port} as tls://{bootstrap.PeerId}@127.0.0.1:{bootstrap.Port}", found.Error, StringComparison.Ordinal);
        Assert.Contains($"blocks 0:5 on {serverDht.PeerId} at {listening}", found.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("WARNING", found.Error, StringComparison.Ordinal);

        // Given by host:port: still encrypted, and the identity met is printed.
        var direct = await CliRunner.RunAsync([.. common, "--peers", $"127.0.0.1:{listening.Port}"]).WaitAsync(Bound, Ct);
        Assert.True(direct.ExitCode == 0, direct.Error);
        Assert.Equal(local.Output, direct.Output);
        Assert.Contains($"connected to 127.0.0.1:{listening.Port} as tls://{serverDht.PeerId}@127.0.0.1:{listening.Port}", direct.Error, StringComparison.Ordinal);

        // Given pinned (the address the server printed): nothing to learn, so no such line.
        var pinned = await CliRunner.RunAsync([.. common, "--peers", listening.ToString()]).WaitAsync(Bound, Ct);
        Assert.True(pinned.ExitCode == 0, pinned.Error);
        Assert.Equal(local.Output, pinned.Output);
        Assert.DoesNotContain("connected to", pinned.Error, StringComparison.Ordinal);

        var status = await CliRunner.RunAsync("status", "--initial-peers", bootstrap.ToString()).WaitAsync(Bound, Ct);
        Assert.True(status.ExitCode == 0, status.Error);
        Assert.Contains(listening.ToString(), status.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("connected to", status.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Initial_peers_that_all_time_out_are_asked_again_before_giving_up()
    {
        // Accepts connections and never answers: every TLS handshake, and so every DHT request, times out.
        var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start();
        var held = new List<System.Net.Sockets.Socket>();
        var accepted = 0;
        var loop = Task.Run(
            async () =>
            {
                try
                {
                    while (true)
                    {
                        held.Add(await silent.AcceptSocketAsync(Ct));
                        Interlocked.Increment(ref accepted);
                    }
                }
                catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or System.Net.Sockets.SocketException)
                {
                    // Stopped.
                }
            },
            Ct);
        try
        {
            var port = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
            var run = await CliRunner.RunAsync("status", "--initial-peers", $"127.0.0.1:{port}").WaitAsync(Bound, Ct);
            Assert.Equal(3, run.ExitCode);
            Assert.Contains($"None of the initial peers answered (tls://127.0.0.1:{port}: timed out after 5 s)", run.Error, StringComparison.Ordinal);
            Assert.Equal(DhtNodeStarter.JoinAttempts, Volatile.Read(ref accepted));
        }
        finally
        {
            silent.Stop();
            await loop.WaitAsync(Bound, Ct);
            foreach (var socket in held)
            {
                socket.Dispose();
            }
        }
    }

    [Fact]
    public async Task Serve_keeps_its_key_with_an_identity_file_even_without_discovery()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var keyFile = Path.Combine(Path.GetTempPath(), $"petals-serve-{Guid.NewGuid():N}.key");
        try
        {
            var ids = new List<string>();
            foreach (var args in new[] { new[] { "--identity", keyFile }, ["--identity", keyFile], [] })
            {
                await using var serve = ServerProcess.Start("server", ["--model", TestData.Stories260KGguf, "--blocks", "0:5", "--host", "127.0.0.1", "--port", "0", "--threads", "1", .. args]);
                ids.Add((await serve.WaitUntilListeningAsync(Bound, Ct)).PeerId!);
            }

            Assert.Equal(ids[0], ids[1]);
            Assert.NotEqual(ids[0], ids[2]);

            // The file is the DHT identity's key: its node id is the first 40 digits of the TLS id.
            using var key = PeerIdentity.Load(keyFile);
            Assert.Equal(key.NodeId.ToString(), ids[0][..40]);
        }
        finally
        {
            File.Delete(keyFile);
        }
    }

    [Fact]
    public async Task Insecure_says_so_loudly_and_plain_tcp_needs_it()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var serve = ServerProcess.Start("server", ["--model", TestData.Stories260KGguf, "--blocks", "0:5", "--host", "127.0.0.1", "--port", "0", "--threads", "1", "--insecure"]);
        var listening = await serve.WaitUntilListeningAsync(Bound, Ct);
        Assert.Equal($"tcp://127.0.0.1:{listening.Port}", listening.ToString());
        Assert.Contains(TransportSecurity.InsecureWarning, serve.Describe("started"), StringComparison.Ordinal);

        string[] common = ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "8"];
        var local = await CliRunner.RunAsync(common);
        var plain = await CliRunner.RunAsync([.. common, "--insecure", "--peers", $"127.0.0.1:{listening.Port}"]).WaitAsync(Bound, Ct);
        Assert.True(plain.ExitCode == 0, plain.Error);
        Assert.Equal(local.Output, plain.Output);
        Assert.StartsWith(TransportSecurity.InsecureWarning + Environment.NewLine, plain.Error, StringComparison.Ordinal);

        // Without --insecure a tcp:// address is refused before anything is sent, and host:port means TLS, which a plain server does not speak.
        var refused = await CliRunner.RunAsync([.. common, "--peers", listening.ToString()]).WaitAsync(Bound, Ct);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains($"--peers: '{listening}' is plain TCP", refused.Error, StringComparison.Ordinal);
        Assert.Contains("add --insecure", refused.Error, StringComparison.Ordinal);
        var tls = await CliRunner.RunAsync([.. common, "--peers", $"127.0.0.1:{listening.Port}"]).WaitAsync(Bound, Ct);
        Assert.Equal(3, tls.ExitCode);
        Assert.Contains($"tls://127.0.0.1:{listening.Port}", tls.Error, StringComparison.Ordinal);
        var dht = await CliRunner.RunAsync("status", "--initial-peers", $"tcp://127.0.0.1:{listening.Port}").WaitAsync(Bound, Ct);
        Assert.Equal(1, dht.ExitCode);
        Assert.Contains("--initial-peers: 'tcp://", dht.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_presenting_another_key_than_its_pinned_or_announced_id_is_refused()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var serve = ServerProcess.Start("server", ["--model", TestData.Stories260KGguf, "--blocks", "0:5", "--host", "127.0.0.1", "--port", "0", "--threads", "1"]);
        var listening = await serve.WaitUntilListeningAsync(Bound, Ct);
        string[] common = ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "4"];

        // Pinned by hand to another key.
        using var other = TlsPeerIdentity.Create();
        var pinned = await CliRunner.RunAsync([.. common, "--peers", listening.WithPeerId(other.PeerId).ToString()]).WaitAsync(Bound, Ct);
        Assert.Equal(3, pinned.ExitCode);
        Assert.Contains($"proved the identity {listening.PeerId}, not the expected {other.PeerId}", pinned.Error, StringComparison.Ordinal);

        // Announced in the DHT by a node that claims the server's address as its own: the client pins the announced id.
        using var key = PeerIdentity.Generate();
        using var tls = TlsPeerIdentity.FromPkcs8(key.ExportPkcs8());
        await using var node = new DhtNode(key);
        await node.StartAsync(new TcpTransport(new TcpTransportOptions { Identity = tls }).WithMultiplexing(), PeerAddress.Parse("tls://127.0.0.1:0"), Ct).WaitAsync(Bound, Ct);
        string modelId;
        int blockCount;
        using (var weights = ModelLoader.Open(TestData.Stories260KGguf))
        {
            modelId = ModelIdentity.Compute(TestData.Stories260KGguf, weights.Config);
            blockCount = weights.Config.NumLayers;
        }

        var lie = new ServerInfo
        {
            PeerId = key.NodeId.ToString(),
            Address = listening.WithPeerId(key.NodeId.ToString()),
            State = ServerState.Online,
            Span = new BlockRange(0, blockCount),
            Throughput = 100,
            CacheTokensLeft = 4096,
        };
        await new DhtPeerDiscovery(node).AnnounceAsync(modelId, blockCount, lie, TimeSpan.FromMinutes(5), Ct).WaitAsync(Bound, Ct);
        var announced = await CliRunner.RunAsync([.. common, "--initial-peers", node.LocalAddress.ToString()]).WaitAsync(Bound, Ct);
        Assert.Equal(3, announced.ExitCode);
        Assert.Contains($"proved the identity {listening.PeerId}, not the expected {key.NodeId}", announced.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_whose_handshake_claims_another_id_than_its_key_is_refused()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var key = TlsPeerIdentity.Create();
        using var victim = TlsPeerIdentity.Create();
        await using var listener = await new TcpTransport(new TcpTransportOptions { Identity = key }).WithMultiplexing().ListenAsync(PeerAddress.Parse("tls://127.0.0.1:0"), Ct);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        // A fake server with its own key that introduces itself as another peer (the victim's id).
        var fake = Task.Run(
            async () =>
        {
            var connections = new List<ProtocolConnection>();
            try
            {
                while (true)
                {
                    var stream = await listener.AcceptAsync(stop.Token);
                    try
                    {
                        connections.Add(await ProtocolConnection.AcceptAsync(stream, new ConnectionPreamble(victim.ShortPeerId, string.Empty), cancellationToken: stop.Token));
                    }
                    catch (Exception e) when (e is TransportException or ProtocolException)
                    {
                        // The client hung up first.
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                foreach (var connection in connections)
                {
                    await connection.DisposeAsync();
                }
            }
        },
            Ct);

        string[] common = ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "4"];
        foreach (var address in new[] { listener.LocalAddress.ToString(), $"127.0.0.1:{listener.LocalAddress.Port}" })
        {
            var run = await CliRunner.RunAsync([.. common, "--peers", address]).WaitAsync(Bound, Ct);
            Assert.Equal(3, run.ExitCode);
            Assert.Contains($"proved the key {key.PeerId} but its handshake claims the peer id '{victim.ShortPeerId}'", run.Error, StringComparison.Ordinal);
        }

        await stop.CancelAsync();
        await fake.WaitAsync(Bound, Ct);
    }
}
