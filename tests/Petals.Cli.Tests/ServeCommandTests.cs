using Petals.Cli.Commands;
using System.Text.Json;
using System.Threading.Channels;
using Petals.Models;
using Petals.Protocol;
using Petals.Testing;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Cli.Tests;

public sealed class ServeCommandTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ServeOnPortZeroPrintsTheListeningLineServesAndPrintsStatsWhenCancelled()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var output = TextWriter.Synchronized(stdout);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var run = PetalsCommand.RunAsync(
            ["serve", "--model", TestData.Stories260KGguf, "--blocks", "1:4", "--port", "0", "--cache-tokens", "512", "--max-length", "64", "--threads", "1"],
            output, TextWriter.Synchronized(stderr), stop.Token);

        var deadline = DateTime.UtcNow + Bound;
        string? line;
        while ((line = stdout.ToString().Split('\n').FirstOrDefault(l => l.StartsWith("listening ", StringComparison.Ordinal))) is null)
        {
            Assert.False(run.IsCompleted, $"serve exited early: {stderr}");
            Assert.True(DateTime.UtcNow < deadline, "serve printed no listening line.");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        // listening tcp://127.0.0.1:PORT blocks 1:4
        var parts = line.Trim().Split(' ');
        Assert.Equal(4, parts.Length);
        Assert.Equal("blocks", parts[2]);
        Assert.Equal("1:4", parts[3]);
        var address = PeerAddress.Parse(parts[1]);
        Assert.Equal("127.0.0.1", address.Host);
        Assert.NotEqual(0, address.Port);
        Assert.Contains("ready in", stderr.ToString(), StringComparison.Ordinal);

        var handler = new Inbox();
        var connection = await ProtocolConnection.ConnectAsync(new TcpTransport().WithMultiplexing(), address, new ConnectionPreamble("cli-test", "stories260K-f32:llama-5x64-v512"), cancellationToken: TestContext.Current.CancellationToken)
            .WaitAsync(Bound, TestContext.Current.CancellationToken);
        await using (connection)
        {
            var reading = connection.RunAsync(handler, TestContext.Current.CancellationToken);
            await connection.SendAsync(connection.NewStreamId(), InfoRequest.Instance, TestContext.Current.CancellationToken);
            var info = Assert.IsType<InfoResponse>(await handler.Messages.Reader.ReadAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(Bound, TestContext.Current.CancellationToken));
            Assert.Equal(new BlockRange(1, 4), info.Blocks);
            Assert.Equal(512ul, info.CacheTokensLeft);
            Assert.Equal(64, info.MaxSessionLength);
            Assert.Equal(64, info.HiddenSize);
            Assert.Equal("stories260K-f32:llama-5x64-v512", info.ModelId);

            var hidden = new float[2 * 64];
            await connection.SendAsync(connection.NewStreamId(), new ForwardRequest(new BlockRange(1, 4), WireCodec.Fp32, WireTensor.FromValues(new TensorShape(1, 2, 64), hidden)), TestContext.Current.CancellationToken);
            Assert.IsType<ForwardResponse>(await handler.Messages.Reader.ReadAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(Bound, TestContext.Current.CancellationToken));
        }

        await stop.CancelAsync();
        var code = await run.WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.True(code == 0, stderr.ToString());
        var stats = stdout.ToString().Split('\n').Single(l => l.StartsWith("stats ", StringComparison.Ordinal));
        using var json = JsonDocument.Parse(stats["stats ".Length..]);
        Assert.Equal(1, json.RootElement.GetProperty("forwards").GetInt64());
        Assert.Equal(2, json.RootElement.GetProperty("tokens").GetInt64());
        Assert.Equal(512, json.RootElement.GetProperty("cache_tokens_left").GetInt64());
        Assert.True(json.RootElement.GetProperty("bytes_received").GetInt64() > 2 * 64 * 4);
        Assert.Equal(2, stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public async Task AServeProcessStopsCleanlyOnSigtermAndPrintsItsStats()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        Assert.SkipWhen(OperatingSystem.IsWindows(), "SIGTERM is a POSIX signal.");
        var info = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "Petals.Cli.dll"), "serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", "--threads", "1" })
        {
            info.ArgumentList.Add(a);
        }

        using var process = System.Diagnostics.Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        try
        {
            var first = await process.StandardOutput.ReadLineAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(Bound, TestContext.Current.CancellationToken);
            Assert.NotNull(first);
            Assert.Matches(@"^listening tls://[0-9a-f]{64}@127\.0\.0\.1:[1-9][0-9]* blocks 0:5$", first); // TLS by default, pinned by the key id

            using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!)
            {
                await kill.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
            }

            var rest = await process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
            await process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
            Assert.True(process.ExitCode == 0, await stderr);
            Assert.StartsWith("stats {", rest, StringComparison.Ordinal);
            using var json = JsonDocument.Parse(rest.Trim()["stats ".Length..]);
            Assert.Equal(0, json.RootElement.GetProperty("sessions").GetInt64());
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    [Theory]
    [InlineData("4:2", "--blocks")]
    [InlineData("0:99", "past the model's")]
    public async Task ABadSpanIsAClearError(string blocks, string fragment)
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var (code, _, error) = await CliRunner.RunAsync("serve", "--model", TestData.Stories260KGguf, "--blocks", blocks);
        Assert.Equal(1, code);
        Assert.Contains(fragment, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "error: Give --blocks START:END to serve a span by hand, or --initial-peers ADDR[,ADDR] (or --new-swarm) to let the swarm place the server.")]
    [InlineData("--new-swarm --num-blocks 6", "error: --num-blocks 6 is more than the model's 5 blocks.")]
    [InlineData("--new-swarm --num-blocks 0", "error: --num-blocks must be at least 1, not 0.")]
    [InlineData("--new-swarm --blocks 0:2 --num-blocks 2", "error: --blocks places the server by hand; --num-blocks sizes a span the swarm places: give one or the other.")]
    [InlineData("--new-swarm --num-blocks 2 --memory-budget 1GiB", "error: --num-blocks fixes the number of blocks; --memory-budget would choose it: give one or the other.")]
    [InlineData("--new-swarm --memory-budget lots", "error: --memory-budget: 'lots' is not a positive byte count (e.g. 8GiB, 512MiB, 4000000000).")]
    [InlineData("--new-swarm --memory-budget 1KiB", "error: memory budget 1.0 KiB (memory-budget) holds no block of this model: one needs ")]
    [InlineData("--new-swarm --num-blocks 2 --balance-quality 0", "error: --balance-quality must be in (0, 10] (0.75 by default), not 0.")]
    [InlineData("--new-swarm --num-blocks 2 --balance-period -1", "error: --balance-period must be a positive number of seconds, not -1.")]
    public async Task Placement_flags_that_cannot_be_served_are_one_line_errors(string flags, string expected)
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        string[] args = ["serve", "--model", TestData.Stories260KGguf, .. flags.Split(' ', StringSplitOptions.RemoveEmptyEntries)];
        var (code, output, error) = await CliRunner.RunAsync(args);
        Assert.Equal(1, code);
        var line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.StartsWith(expected, line, StringComparison.Ordinal);
        Assert.DoesNotContain("listening", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_network_bandwidth_caps_the_estimate_keys_the_cache_and_needs_discovery()
    {
        var given = ServeCommand.ParseThroughput(null, null, 2, 250);
        Assert.Equal(250, given.NetworkBandwidthMbps);
        Assert.Equal("threads=2;net=250", given.ExecutorSettings);
        var computeOnly = ServeCommand.ParseThroughput(null, null, null, 0);
        Assert.Null(computeOnly.NetworkBandwidthMbps);
        Assert.Equal("threads=default;net=0", computeOnly.ExecutorSettings);
        Assert.Equal("--network-bandwidth must be a non-negative number of Mbit/s (0: compute only), not -1.", Assert.Throws<ArgumentException>(() => ServeCommand.ParseThroughput(null, null, 1, -1)).Message);

        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var (code, _, error) = await CliRunner.RunAsync("serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", "--network-bandwidth", "10");
        Assert.Equal(1, code);
        Assert.Contains("error: --network-bandwidth needs discovery: add --initial-peers ADDR[,ADDR] or --new-swarm.", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABadServerSettingIsRefusedByTheHostBeforeTheDhtNodeStarts()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var (code, output, error) = await CliRunner.RunAsync("serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", "--new-swarm", "--cache-tokens", "0");
        Assert.Equal(1, code);
        Assert.Contains("PetalsServerOptions.Server.CacheTokens", error, StringComparison.Ordinal);
        Assert.DoesNotContain("dht ", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ACacheShareOutsideZeroToOneIsRefusedNamingTheSetting()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var (code, output, error) = await CliRunner.RunAsync("serve", "--model", TestData.Stories260KGguf, "--blocks", "0:5", "--max-cache-share", "1.5");
        Assert.Equal(1, code);
        Assert.Contains("PetalsServerOptions.Server.MaxCacheShare", error, StringComparison.Ordinal);
        Assert.Contains("must be in (0, 1]", error, StringComparison.Ordinal);
        Assert.DoesNotContain("listening", output, StringComparison.Ordinal);
    }

    private sealed class Inbox : IProtocolMessageHandler
    {
        public Channel<ProtocolMessage> Messages { get; } = Channel.CreateUnbounded<ProtocolMessage>();

        public ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken ct)
        {
            // Tensors die with this call; the test only checks message types, not values.
            Messages.Writer.TryWrite(message);
            return ValueTask.CompletedTask;
        }

        public void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException error) =>
            Messages.Writer.TryWrite(ErrorMessage.From(error, ProtocolLimits.Default));
    }
}
