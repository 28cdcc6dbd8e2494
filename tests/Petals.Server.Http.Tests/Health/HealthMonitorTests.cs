using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Petals.Discovery;
using Petals.Server.Http.Health;
using Petals.Testing;
using Petals.Testing.Discovery;
using Petals.Testing.Time;
using Petals.Transport;

namespace Petals.Server.Http.Tests.Health;

/// <summary>The monitor's refresh on its injected clock, its options, its failed reads and its embedded assets (discovery in memory).</summary>
public sealed class HealthMonitorTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task TheMonitorReadsTheSwarmAgainEveryRefreshIntervalOfItsClock()
    {
        var time = new ManualTimeProvider();
        var network = new MemoryDiscoveryNetwork(time);
        var server = network.CreatePeer("peer-a");
        using var host = BuildHost(network.CreatePeer("monitor"), time, TimeSpan.FromSeconds(5));
        var monitor = host.Services.GetRequiredService<SwarmHealthMonitor>();
        await host.StartAsync(Ct);
        try
        {
            await WaitAsync(() => monitor.State.Refreshes == 1, "the first read at start");
            Assert.Empty(monitor.State.Models);
            Assert.Equal(time.GetUtcNow(), monitor.State.UpdatedAt);

            await server.AnnounceAsync("m", 4, Info("peer-a", new(0, 3)), TimeSpan.FromMinutes(1), Ct);
            time.Advance(TimeSpan.FromSeconds(4));
            Assert.Equal(1, monitor.State.Refreshes);
            time.Advance(TimeSpan.FromSeconds(1));
            await WaitAsync(() => monitor.State.Refreshes == 2, "the read 5 s later");
            var model = Assert.Single(monitor.State.Models);
            Assert.Equal([1, 1, 1, 0], model.Blocks.Select(b => b.Servers));
            Assert.Equal(3, model.BlocksCovered);
            Assert.Equal(55, Assert.Single(model.Servers).ExpiresInSeconds);
        }
        finally
        {
            await host.StopAsync(Ct);
        }
    }

    [Fact]
    public async Task AFailedReadKeepsTheLastModelsAndSaysWhy()
    {
        var network = new MemoryDiscoveryNetwork();
        await network.CreatePeer("peer-a").AnnounceAsync("m", 2, Info("peer-a", new(0, 2)), TimeSpan.FromMinutes(1), Ct);
        var failing = new FailingDiscovery(network.CreatePeer("monitor"));
        using var host = BuildHost(failing, TimeProvider.System, TimeSpan.FromHours(1));
        var monitor = host.Services.GetRequiredService<SwarmHealthMonitor>();
        Assert.Single((await monitor.RefreshAsync(Ct)).Models);

        failing.Fail = true;
        var state = await monitor.RefreshAsync(Ct);
        Assert.Equal("DHT unreachable (test)", state.Error);
        Assert.Single(state.Models);
        Assert.Equal(2, state.Refreshes);
    }

    [Fact]
    public async Task OnlyOnlineServersCountAsCoverageButEveryAnnouncedServerIsListed()
    {
        var network = new MemoryDiscoveryNetwork();
        await network.CreatePeer("peer-a").AnnounceAsync("m", 3, Info("peer-a", new(0, 3)), TimeSpan.FromMinutes(1), Ct);
        await network.CreatePeer("peer-b").AnnounceAsync("m", 3, Info("peer-b", new(1, 3)) with { State = ServerState.Joining, Throughput = 99 }, TimeSpan.FromMinutes(1), Ct);
        await network.CreatePeer("peer-c").AnnounceAsync("m", 3, Info("peer-c", new(2, 3)) with { State = ServerState.Offline }, TimeSpan.FromMinutes(1), Ct);
        using var host = BuildHost(network.CreatePeer("monitor"), TimeProvider.System, TimeSpan.FromHours(1));
        var model = Assert.Single((await host.Services.GetRequiredService<SwarmHealthMonitor>().RefreshAsync(Ct)).Models);

        Assert.Equal([1, 1, 1], model.Blocks.Select(b => b.Servers));
        Assert.Equal([10.0, 10.0, 10.0], model.Blocks.Select(b => b.Throughput));
        Assert.Equal(3, model.BlocksCovered);
        Assert.Equal([("peer-a", "online"), ("peer-b", "joining"), ("peer-c", "offline")], model.Servers.Select(s => (s.PeerId, s.State)));
        Assert.Equal(3, model.ServerCount);
    }

    [Theory]
    [InlineData(0.0, "RefreshInterval must be 0.1 s to 1 h")]
    [InlineData(7200.0, "RefreshInterval must be 0.1 s to 1 h")]
    public async Task BadOptionsFailAtStartNamingTheOption(double seconds, string message)
    {
        using var host = BuildHost(new MemoryDiscoveryNetwork().CreatePeer("monitor"), TimeProvider.System, TimeSpan.FromSeconds(seconds));
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(Ct));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MappingWithoutRegistrationSaysWhatIsMissing()
    {
        var builder = WebApplication.CreateSlimBuilder();
        using var app = builder.Build();
        var e = Assert.Throws<InvalidOperationException>(() => app.MapPetalsHealthMonitor());
        Assert.Contains("AddPetalsHealthMonitor", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheAssetsAreEmbeddedAndReferenceNothingOutside()
    {
        var assets = new HealthAssets();
        Assert.Equal(["health.css", "health.js", "index.html", "server.html"], assets.Files.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, bytes) in assets.Files)
        {
            var text = System.Text.Encoding.UTF8.GetString(bytes);
            Assert.DoesNotContain("http://", text, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("https://", text, StringComparison.OrdinalIgnoreCase);
            Assert.NotEmpty(name);
        }
    }

    [Fact]
    public void TheStateJsonIsSnakeCase()
    {
        var state = new SwarmHealthState(DateTimeOffset.UnixEpoch, 5, 1, null,
        [
            new ModelHealth("m", 1, 1, true, null, 1, [new BlockHealth(0, 1, 2.5)],
                [new ServerHealth("p", null, "tcp://127.0.0.1:1", "online", 0, 1, 2.5, null, 10, "F32", null, [], "v", 3, new Dictionary<string, double>())], []),
        ]);
        using var json = JsonDocument.Parse(JsonSerializer.Serialize(state, HealthJsonContext.Default.SwarmHealthState));
        var server = json.RootElement.GetProperty("models")[0].GetProperty("servers")[0];
        Assert.Equal(["peer_id", "public_name", "address", "state", "span_start", "span_end", "throughput", "throughput_method", "cache_tokens_left", "dtype", "quantization", "adapters", "version", "expires_in_seconds", "next_server_rtts_ms"],
            server.EnumerateObject().Select(p => p.Name));
        Assert.Equal(["updated_at", "refresh_seconds", "refreshes", "error", "models"], json.RootElement.EnumerateObject().Select(p => p.Name));
    }

    private static ServerInfo Info(string peerId, Petals.Models.BlockRange span) => new()
    {
        PeerId = peerId,
        Address = PeerAddress.Parse("tcp://127.0.0.1:1"),
        State = ServerState.Online,
        Span = span,
        Throughput = 10,
    };

    private static IHost BuildHost(IPeerDiscovery discovery, TimeProvider time, TimeSpan refresh)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(time);
        builder.Services.AddSingleton(discovery);
        builder.Services.AddPetalsHealthMonitor(o => o.RefreshInterval = refresh);
        return builder.Build();
    }

    private static async Task WaitAsync(Func<bool> done, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!done())
        {
            Assert.True(DateTime.UtcNow < deadline, what + ": not within 30 s");
            await Task.Delay(5, Ct);
        }
    }

    /// <summary>Real in-memory discovery whose reads fail on demand (a DHT that cannot be reached).</summary>
    private sealed class FailingDiscovery(IPeerDiscovery inner) : DelegatingPeerDiscovery(inner)
    {
        public bool Fail { get; set; }

        public override Task<IReadOnlyList<SwarmModelInfo>> GetModelsAsync(CancellationToken cancellationToken = default) =>
            Fail ? throw new TransportException(TransportErrorKind.ConnectionRefused, "DHT unreachable (test)") : base.GetModelsAsync(cancellationToken);
    }
}
