using System.Text.Json;
using Petals.Backends.Cpu;
using Petals.Discovery;
using Petals.Execution;
using Petals.Formats;
using Petals.Models;
using Petals.Server;
using Petals.Testing;
using Petals.Testing.Execution;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Cli.Tests;

/// <summary>
/// <c>petals generate --initial-peers</c> and <c>petals status</c> against a swarm in this process over TCP on 127.0.0.1:
/// a bootstrap DHT node, and block servers of the tiny model each announcing through its own DHT node.
/// </summary>
public sealed class StatusAndDiscoveryGenerateTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Generate_with_only_the_bootstrap_address_equals_local_generation()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var swarm = await TcpSwarm.StartAsync([new(0, 2), new(2, 5)]);
        string[] common = ["--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "20", "--output", "json"];
        var local = await CliRunner.RunAsync(["generate", .. common]);
        Assert.True(local.ExitCode == 0, local.Error);
        var remote = await CliRunner.RunAsync(["generate", .. common, "--initial-peers", swarm.Bootstrap.ToString(), "--insecure"]).WaitAsync(Bound, Ct);
        Assert.True(remote.ExitCode == 0, remote.Error);
        using var expected = JsonDocument.Parse(local.Output);
        using var actual = JsonDocument.Parse(remote.Output);
        Assert.Equal(expected.RootElement.GetProperty("generated_ids").ToString(), actual.RootElement.GetProperty("generated_ids").ToString());
        Assert.Equal(expected.RootElement.GetProperty("text").GetString(), actual.RootElement.GetProperty("text").GetString());
        Assert.Contains($"blocks 0:2 on {swarm.PeerIds[0]} at {swarm.Addresses[0]}", remote.Error, StringComparison.Ordinal);
        Assert.Contains($"blocks 2:5 on {swarm.PeerIds[1]} at {swarm.Addresses[1]}", remote.Error, StringComparison.Ordinal);
        Assert.True(swarm.Servers.All(s => s.GetStatistics().InferenceSteps > 0), "every server took part");
    }

    [Fact]
    public async Task A_real_generate_process_with_only_the_bootstrap_address_generates_as_locally_and_exits_cleanly()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var swarm = await TcpSwarm.StartAsync([new(0, 1), new(1, 3), new(3, 5)]);
        string[] common = ["--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "16"];
        var local = await CliRunner.RunAsync(["generate", .. common]);
        Assert.True(local.ExitCode == 0, local.Error);
        var remote = await CliRunner.RunProcessAsync(Bound, ["generate", .. common, "--initial-peers", swarm.Bootstrap.ToString(), "--insecure"]);
        Assert.True(remote.ExitCode == 0, remote.Error);
        Assert.Equal(local.Output, remote.Output);
        Assert.Contains("joined the swarm as DHT node", remote.Error, StringComparison.Ordinal);
        Assert.Equal(3, remote.Error.Split('\n').Count(l => l.StartsWith("blocks ", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Status_lists_the_model_its_blocks_servers_and_the_chain_then_names_the_uncovered_blocks_when_a_server_goes_offline()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var swarm = await TcpSwarm.StartAsync([new(0, 2), new(2, 5)]);
        var (code, output, error) = await CliRunner.RunAsync("status", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure", "--output", "json").WaitAsync(Bound, Ct);
        Assert.True(code == 0, error);
        using (var json = JsonDocument.Parse(output))
        {
            var model = Assert.Single(json.RootElement.GetProperty("models").EnumerateArray());
            Assert.Equal(swarm.ModelId, model.GetProperty("model_id").GetString());
            Assert.Equal(5, model.GetProperty("block_count").GetInt32());
            Assert.Equal(2, model.GetProperty("server_count").GetInt32());
            var chain = model.GetProperty("chain");
            Assert.True(chain.GetProperty("complete").GetBoolean());
            Assert.Equal(JsonValueKind.Null, chain.GetProperty("problem").ValueKind);
            Assert.Equal(["0:2", "2:5"], chain.GetProperty("servers").EnumerateArray().Select(s => s.GetProperty("span").GetString()));
            var blocks = model.GetProperty("blocks").EnumerateArray().ToArray();
            Assert.Equal([0, 1, 2, 3, 4], blocks.Select(b => b.GetProperty("block").GetInt32()));
            var first = Assert.Single(blocks[1].GetProperty("servers").EnumerateArray());
            Assert.Equal(swarm.PeerIds[0], first.GetProperty("peer_id").GetString());
            Assert.Equal("server-0", first.GetProperty("public_name").GetString());
            Assert.Equal(swarm.Addresses[0].ToString(), first.GetProperty("address").GetString());
            Assert.Equal("online", first.GetProperty("state").GetString());
            Assert.Equal("0:2", first.GetProperty("span").GetString());
            Assert.Equal(250.0, first.GetProperty("throughput").GetDouble());
            Assert.Equal("given", first.GetProperty("throughput_method").GetString());
            Assert.Equal(JsonValueKind.Null, Assert.Single(blocks[3].GetProperty("servers").EnumerateArray()).GetProperty("throughput_method").ValueKind);
            Assert.Equal(4096, first.GetProperty("cache_tokens_left").GetInt64());
            Assert.Equal("cli-test", first.GetProperty("version").GetString());
            Assert.InRange(first.GetProperty("expires_in_seconds").GetDouble(), 1, 300);
            Assert.Empty(model.GetProperty("ignored").EnumerateArray());
        }

        var text = await CliRunner.RunAsync("status", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure").WaitAsync(Bound, Ct);
        Assert.True(text.ExitCode == 0, text.Error);
        Assert.Contains($"model {swarm.ModelId} (5 blocks, 2 servers): full chain of online servers: 0:2 by {swarm.PeerIds[0][..8]}…, 2:5 by {swarm.PeerIds[1][..8]}…", text.Output, StringComparison.Ordinal);
        Assert.Contains("block  peer", text.Output, StringComparison.Ordinal);
        Assert.Equal(5, text.Output.Split('\n').Count(l => l.StartsWith("  ", StringComparison.Ordinal) && l.Contains(" online ", StringComparison.Ordinal)));

        // The second server says it goes offline: status and generate name the blocks left uncovered.
        await swarm.AnnounceAsync(1, ServerState.Offline);
        text = await CliRunner.RunAsync("status", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure").WaitAsync(Bound, Ct);
        Assert.True(text.ExitCode == 0, text.Error);
        Assert.Contains($"NO full chain: no online server covers blocks 2:5 of model {swarm.ModelId} (routing blocks 0:5; online spans: 0:2 by {swarm.PeerIds[0][..8]}…)", text.Output, StringComparison.Ordinal);
        Assert.Contains(" offline ", text.Output, StringComparison.Ordinal);

        var generate = await CliRunner.RunAsync("generate", "--model", TestData.Stories260KGguf, "--prompt", "Hi", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure").WaitAsync(Bound, Ct);
        Assert.Equal(3, generate.ExitCode);
        Assert.Contains("error: no online server covers blocks 2:5", generate.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Allow_and_block_lists_choose_among_servers_of_the_same_blocks()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var swarm = await TcpSwarm.StartAsync([new(0, 5), new(0, 5)]);
        string[] common = ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "4", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure"];
        foreach (var (option, chosen) in new[] { ("--allow-peers", 1), ("--block-peers", 0), ("--allow-peers", 0), ("--block-peers", 1) })
        {
            var value = option == "--allow-peers" ? swarm.PeerIds[chosen] : swarm.PeerIds[1 - chosen];
            var run = await CliRunner.RunAsync([.. common, option, $" {value} ,"]).WaitAsync(Bound, Ct);
            Assert.True(run.ExitCode == 0, run.Error);
            Assert.Contains($"blocks 0:5 on {swarm.PeerIds[chosen]}", run.Error, StringComparison.Ordinal);
        }

        var none = await CliRunner.RunAsync([.. common, "--block-peers", string.Join(',', swarm.PeerIds)]).WaitAsync(Bound, Ct);
        Assert.Equal(3, none.ExitCode);
        Assert.Contains("error: no online server covers blocks 0:5", none.Error, StringComparison.Ordinal);
        Assert.Contains("(blocked)", none.Error, StringComparison.Ordinal);

        var empty = await CliRunner.RunAsync([.. common, "--allow-peers", " , "]).WaitAsync(Bound, Ct);
        Assert.NotEqual(0, empty.ExitCode);
        Assert.Contains("--allow-peers names no peer id.", empty.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_of_a_model_the_swarm_does_not_announce_is_an_error_listing_the_models()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var swarm = await TcpSwarm.StartAsync([new(0, 5)]);
        var (code, output, error) = await CliRunner.RunAsync("status", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure", "--model", "nope").WaitAsync(Bound, Ct);
        Assert.Equal(3, code);
        Assert.Equal(string.Empty, output);
        Assert.Contains($"Model 'nope' is not announced in the swarm; it announces {swarm.ModelId}.", error, StringComparison.Ordinal);

        var only = await CliRunner.RunAsync("status", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure", "--model", swarm.ModelId).WaitAsync(Bound, Ct);
        Assert.True(only.ExitCode == 0, only.Error);
        Assert.Contains($"model {swarm.ModelId} (5 blocks, 1 servers): full chain", only.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Servers_announcing_a_custom_model_id_are_found_with_model_id()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var swarm = await TcpSwarm.StartAsync([new(0, 5)], modelId: "my-stories");
        string[] args = ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "4", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure"];
        var missing = await CliRunner.RunAsync(args).WaitAsync(Bound, Ct);
        Assert.Equal(3, missing.ExitCode);
        Assert.Contains("no online server covers blocks 0:5 of model stories260K-f32:llama-5x64-v512 (routing blocks 0:5; online spans: none)", missing.Error, StringComparison.Ordinal);

        var found = await CliRunner.RunAsync([.. args, "--model-id", "my-stories"]).WaitAsync(Bound, Ct);
        Assert.True(found.ExitCode == 0, found.Error);
        Assert.StartsWith("Once upon a time", found.Output, StringComparison.Ordinal);
        Assert.Contains($"blocks 0:5 on {swarm.PeerIds[0]}", found.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unreachable_initial_peers_exit_with_code_3_naming_them()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);

        // A port that was free a moment ago: nothing listens there.
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        foreach (var command in new[] { "status", "generate" })
        {
            string[] args = command == "status"
                ? ["status", "--initial-peers", $"127.0.0.1:{port}"]
                : ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Hi", "--initial-peers", $"127.0.0.1:{port}"];
            var (code, _, error) = await CliRunner.RunAsync(args).WaitAsync(Bound, Ct);
            Assert.Equal(3, code);
            Assert.Contains($"None of the initial peers answered (tls://127.0.0.1:{port}: ", error, StringComparison.Ordinal);
            Assert.Contains("refused", error, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("--initial-peers", "udp://1.2.3.4:5", "is not a DHT address")]
    [InlineData("--initial-peers", " , ", "names no DHT node")]
    [InlineData("--peers", "127.0.0.1:1", "exclusive")]
    [InlineData("--model-id", "x", "--model-id needs --initial-peers")]
    [InlineData("--allow-peers", "abc", "--allow-peers needs --initial-peers")]
    [InlineData("--block-peers", "abc", "--block-peers needs --initial-peers")]
    public async Task Bad_initial_peers_are_clear_errors(string option, string value, string fragment)
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        string[] args = option switch
        {
            "--peers" => ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Hi", "--peers", value, "--initial-peers", "127.0.0.1:2"],
            _ => ["generate", "--model", TestData.Stories260KGguf, "--prompt", "Hi", option, value],
        };
        var (code, _, error) = await CliRunner.RunAsync(args).WaitAsync(Bound, Ct);
        Assert.NotEqual(0, code);
        Assert.Contains(fragment, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Generate_and_status_with_require_quant_use_only_servers_announcing_it_and_name_what_is_offered_otherwise()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);

        // One server of every block runs "nf4" (and its outputs differ); two others split the blocks unquantized.
        await using var swarm = await TcpSwarm.StartAsync([new(0, 5), new(0, 2), new(2, 5)], quantizations: ["nf4", "none", "none"]);
        string[] common = ["--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "12", "--output", "json"];
        var local = await CliRunner.RunAsync(["generate", .. common]);
        Assert.True(local.ExitCode == 0, local.Error);

        var remote = await CliRunner.RunAsync(["generate", .. common, "--initial-peers", swarm.Bootstrap.ToString(), "--insecure", "--require-quant", "NONE"]).WaitAsync(Bound, Ct);
        Assert.True(remote.ExitCode == 0, remote.Error);
        using (var expected = JsonDocument.Parse(local.Output))
        using (var actual = JsonDocument.Parse(remote.Output))
        {
            Assert.Equal(expected.RootElement.GetProperty("generated_ids").ToString(), actual.RootElement.GetProperty("generated_ids").ToString());
        }

        Assert.Contains($"blocks 0:2 on {swarm.PeerIds[1]} at {swarm.Addresses[1]} (blocks 0:2), weights none", remote.Error, StringComparison.Ordinal);
        Assert.Contains($"blocks 2:5 on {swarm.PeerIds[2]} at {swarm.Addresses[2]} (blocks 2:5), weights none", remote.Error, StringComparison.Ordinal);
        Assert.Equal(0, swarm.Servers[0].GetStatistics().InferenceSteps);

        // Without the requirement the one-hop nf4 server is the chain; with q4_k there is none, and the error says what there is.
        var status = await CliRunner.RunAsync("status", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure", "--output", "json").WaitAsync(Bound, Ct);
        Assert.True(status.ExitCode == 0, status.Error);
        using (var json = JsonDocument.Parse(status.Output))
        {
            var model = Assert.Single(json.RootElement.GetProperty("models").EnumerateArray());
            Assert.Equal([swarm.PeerIds[0]], model.GetProperty("chain").GetProperty("servers").EnumerateArray().Select(s => s.GetProperty("peer_id").GetString()));
            var block0 = model.GetProperty("blocks").EnumerateArray().First().GetProperty("servers").EnumerateArray()
                .ToDictionary(s => s.GetProperty("peer_id").GetString()!, s => s.GetProperty("quantization").GetString());
            Assert.Equal("nf4", block0[swarm.PeerIds[0]]);
            Assert.Equal("none", block0[swarm.PeerIds[1]]);
        }

        var text = await CliRunner.RunAsync("status", "--initial-peers", swarm.Bootstrap.ToString(), "--insecure", "--require-quant", "none").WaitAsync(Bound, Ct);
        Assert.True(text.ExitCode == 0, text.Error);
        Assert.Contains($"full chain of online servers: 0:2 by {swarm.PeerIds[1][..8]}…, 2:5 by {swarm.PeerIds[2][..8]}…", text.Output, StringComparison.Ordinal);
        Assert.Contains(" quant ", text.Output, StringComparison.Ordinal);

        var none = await CliRunner.RunAsync(["generate", .. common, "--initial-peers", swarm.Bootstrap.ToString(), "--insecure", "--require-quant", "q4_k"]).WaitAsync(Bound, Ct);
        Assert.Equal(3, none.ExitCode);
        var line = Assert.Single(none.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.Equal(
            $"error: no online server covers blocks 0:5 of model {swarm.ModelId} (routing blocks 0:5; online spans: none; required weight quantization 'q4_k': "
            + $"the swarm offers 'nf4' (0:5 by {swarm.PeerIds[0][..8]}…), 'none' (0:2 by {swarm.PeerIds[1][..8]}…, 2:5 by {swarm.PeerIds[2][..8]}…))",
            line);
    }

    /// <summary>A bootstrap DHT node and block servers of the tiny model on plain TCP (so the commands run with --insecure), each server announced through its own DHT node.</summary>
    internal sealed class TcpSwarm : IAsyncDisposable
    {
        private readonly List<DhtNode> _nodes = [];
        private readonly List<PeerIdentity> _identities = [];
        private readonly List<DhtPeerDiscovery> _announcers = [];
        private readonly List<ITransportListener> _listeners = [];
        private readonly List<IBlockExecutor> _executors = [];
        private readonly List<BlockRange> _spans = [];
        private IModelWeights? _weights;

        public PeerAddress Bootstrap { get; private set; }

        public string ModelId { get; private set; } = string.Empty;

        public List<BlockServer> Servers { get; } = [];

        public List<PeerAddress> Addresses { get; } = [];

        public List<string> PeerIds { get; } = [];

        /// <param name="spans">The servers' spans.</param>
        /// <param name="modelId">The model id announced (default: computed).</param>
        /// <param name="quantizations">
        /// Per server, the quantization its executor reports and announces (default "none"); servers of one other than
        /// "none" add noise to their outputs, as a lossy quantization changes them.
        /// </param>
        public static async Task<TcpSwarm> StartAsync(BlockRange[] spans, string? modelId = null, string[]? quantizations = null)
        {
            var swarm = new TcpSwarm();
            try
            {
                var transport = new TcpTransport().WithMultiplexing();
                swarm._weights = ModelLoader.Open(TestData.Stories260KGguf);
                swarm.ModelId = modelId ?? ModelIdentity.Compute(TestData.Stories260KGguf, swarm._weights.Config);
                var bootstrap = await swarm.StartNodeAsync(transport, null);
                swarm.Bootstrap = bootstrap.LocalAddress;
                var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 });
                for (var i = 0; i < spans.Length; i++)
                {
                    var node = await swarm.StartNodeAsync(transport, swarm.Bootstrap);
                    swarm._announcers.Add(new DhtPeerDiscovery(node));
                    var executor = factory.Create(swarm._weights, spans[i]);
                    if (quantizations?[i] is { } quantization and not "none")
                    {
                        executor = new ReportedWeightsExecutor(new LyingBlockExecutor(executor, seed: i) { Kind = LieKind.Noise, LieOnForwards = true }, quantization);
                    }

                    swarm._executors.Add(executor);
                    var server = new BlockServer(executor, new BlockServerOptions { Blocks = spans[i], ModelId = swarm.ModelId, PeerId = node.Id.ToString() });
                    var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
                    swarm._listeners.Add(listener);
                    await server.StartAsync(listener, Ct);
                    swarm.Servers.Add(server);
                    swarm.Addresses.Add(listener.LocalAddress);
                    swarm.PeerIds.Add(node.Id.ToString());
                    swarm._spans.Add(spans[i]);
                    await swarm.AnnounceAsync(i, ServerState.Online);
                }

                return swarm;
            }
            catch
            {
                await swarm.DisposeAsync();
                throw;
            }
        }

        public async Task AnnounceAsync(int server, ServerState state)
        {
            var info = new ServerInfo
            {
                PeerId = PeerIds[server],
                Address = Addresses[server],
                State = state,
                Span = _spans[server],
                Throughput = 250,
                ThroughputMethod = server == 0 ? "given" : null,
                CacheTokensLeft = 4096,
                Version = "cli-test",
                PublicName = $"server-{server}",
                Quantization = Servers[server].Quantization,
            };
            var stored = await _announcers[server].AnnounceAsync(ModelId, _weights!.Config.NumLayers, info, TimeSpan.FromMinutes(5), Ct).WaitAsync(Bound, Ct);
            Assert.Equal(info.Span.Count, stored);
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var server in Servers)
            {
                await server.DisposeAsync();
            }

            foreach (var listener in _listeners)
            {
                await listener.DisposeAsync();
            }

            foreach (var executor in _executors)
            {
                executor.Dispose();
            }

            foreach (var node in _nodes)
            {
                await node.DisposeAsync().AsTask().WaitAsync(Bound);
            }

            foreach (var identity in _identities)
            {
                identity.Dispose();
            }

            _weights?.Dispose();
        }

        private async Task<DhtNode> StartNodeAsync(ITransport transport, PeerAddress? bootstrap)
        {
            var identity = PeerIdentity.Generate();
            _identities.Add(identity);
            var node = new DhtNode(identity);
            _nodes.Add(node);
            await node.StartAsync(transport, PeerAddress.Parse("tcp://127.0.0.1:0"), Ct).WaitAsync(Bound, Ct);
            if (bootstrap is { } address)
            {
                Assert.Equal(1, await node.BootstrapAsync([address], Ct).WaitAsync(Bound, Ct));
            }

            return node;
        }
    }

    /// <summary>Reports <paramref name="quantization"/> as the executor's weight storage, as a quantizing executor does.</summary>
    private sealed class ReportedWeightsExecutor(IBlockExecutor inner, string quantization) : DelegatingBlockExecutor(inner)
    {
        public override object? GetService(Type serviceType, object? serviceKey = null) =>
            serviceKey is null && serviceType == typeof(ExecutorWeightsInfo)
                ? new ExecutorWeightsInfo(quantization, new Dictionary<Petals.Tensors.TensorDType, long>())
                : base.GetService(serviceType, serviceKey);
    }
}
