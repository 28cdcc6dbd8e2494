using Petals.Backends.Cpu;
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
/// <c>petals generate --peers … --verify-rate</c> against block servers of the tiny model in this process over TCP on
/// 127.0.0.1, one of which skips its blocks and echoes its input (the lying server of issue 12).
/// </summary>
public sealed class GenerateVerificationTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Generate_catches_an_echoing_server_prints_the_mismatch_and_equals_local_generation()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var servers = await LyingServers.StartAsync();
        string[] common = ["--insecure", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "12"];
        var local = await CliRunner.RunAsync(["generate", .. common]);
        Assert.True(local.ExitCode == 0, local.Error);

        var verified = await CliRunner.RunAsync(["generate", .. common, "--peers", servers.Peers, "--verify-rate", "1"]).WaitAsync(Bound, Ct);

        Assert.True(verified.ExitCode == 0, verified.Error);
        Assert.Equal(local.Output, verified.Output);
        Assert.Contains("verification failed: server liar", verified.Error, StringComparison.Ordinal);
        Assert.True(verified.Error.Contains("verdict ServerWrong", StringComparison.Ordinal), verified.Error);
        Assert.Contains("\"failed\":\"liar\"", verified.Error, StringComparison.Ordinal); // the recovery line
        Assert.Contains("output checks at rate 1: ", verified.Error, StringComparison.Ordinal);
        Assert.Contains(", 1 failed, ", verified.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_verify_rate_0_the_echoing_server_corrupts_the_text()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        await using var servers = await LyingServers.StartAsync();
        string[] common = ["--insecure", "--model", TestData.Stories260KGguf, "--prompt", "Once upon a time", "--max-new-tokens", "12"];
        var local = await CliRunner.RunAsync(["generate", .. common]);

        var unchecked_ = await CliRunner.RunAsync(["generate", .. common, "--peers", servers.Peers, "--verify-rate", "0"]).WaitAsync(Bound, Ct);

        Assert.True(unchecked_.ExitCode == 0, unchecked_.Error);
        Assert.NotEqual(local.Output, unchecked_.Output);
        Assert.DoesNotContain("verification failed", unchecked_.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("output checks", unchecked_.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1.5")]
    [InlineData("-0.1")]
    public async Task A_verify_rate_outside_0_to_1_is_refused(string rate)
    {
        var (code, _, error) = await CliRunner.RunAsync("generate", "--model", "m.gguf", "--prompt", "x", "--peers", "tcp://127.0.0.1:1", "--insecure", "--verify-rate", rate);
        Assert.NotEqual(0, code);
        Assert.Contains("--verify-rate must be between 0 and 1", error, StringComparison.Ordinal);
    }

    /// <summary>The liar runs all five blocks (the router's first choice: one hop); honest servers split them twice.</summary>
    private sealed class LyingServers : IAsyncDisposable
    {
        private readonly List<ITransportListener> _listeners = [];
        private readonly List<IBlockExecutor> _executors = [];
        private readonly List<BlockServer> _servers = [];
        private IModelWeights? _weights;

        public string Peers { get; private set; } = string.Empty;

        public static async Task<LyingServers> StartAsync()
        {
            var servers = new LyingServers();
            try
            {
                var transport = new TcpTransport().WithMultiplexing();
                servers._weights = ModelLoader.Open(TestData.Stories260KGguf);
                var modelId = ModelIdentity.Compute(TestData.Stories260KGguf, servers._weights.Config);
                var factory = new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 });
                // Two disjoint honest chains with the same split: whichever one checks the liar, the other gives the third opinion.
                (string Id, BlockRange Span)[] layout = [("liar", new(0, 5)), ("a", new(0, 2)), ("b", new(2, 5)), ("c", new(0, 2)), ("d", new(2, 5))];
                var addresses = new List<string>();
                foreach (var (id, span) in layout)
                {
                    IBlockExecutor executor = factory.Create(servers._weights, span);
                    if (id == "liar")
                    {
                        executor = new LyingBlockExecutor(executor);
                    }

                    servers._executors.Add(executor);
                    var server = new BlockServer(executor, new BlockServerOptions { Blocks = span, ModelId = modelId, PeerId = id });
                    var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
                    servers._listeners.Add(listener);
                    await server.StartAsync(listener, Ct);
                    servers._servers.Add(server);
                    addresses.Add(listener.LocalAddress.ToString());
                }

                servers.Peers = string.Join(',', addresses);
                return servers;
            }
            catch
            {
                await servers.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var server in _servers)
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

            _weights?.Dispose();
        }
    }
}
