using Petals.Client;
using Petals.Discovery;
using Petals.Health;
using Petals.Models;
using Petals.Routing;
using Petals.Testing.Time;
using Petals.Testing.Transport;
using Petals.Tests.Client;
using Petals.Transport;

namespace Petals.Tests.Health;

/// <summary>The default peer health through the public <see cref="IPeerHealth"/> API, and a custom one plugged into the sequence manager.</summary>
public sealed class PeerHealthPolicyTests
{
    private static readonly TimeSpan Bound = ClientRig.Bound;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void A_failure_of_any_kind_bans_the_peer_each_further_one_doubles_the_ban_up_to_the_cap_and_a_success_lifts_it()
    {
        var time = new ManualTimeProvider();
        var policy = new PeerHealthPolicy(new PeerHealthOptions { BanBase = TimeSpan.FromSeconds(10), BanCap = TimeSpan.FromSeconds(30) }, time);
        IPeerHealth health = policy;

        Assert.Equal(TimeSpan.FromSeconds(10), health.ReportFailure("p", PeerFailureKind.Timeout));
        Assert.Equal(["p"], health.GetBannedPeers());
        time.Advance(TimeSpan.FromSeconds(10) - TimeSpan.FromTicks(1));
        Assert.Equal(["p"], health.GetBannedPeers());
        time.Advance(TimeSpan.FromTicks(1));
        Assert.Empty(health.GetBannedPeers());

        // The failures are remembered past the ban's end, whatever their kind.
        Assert.Equal(TimeSpan.FromSeconds(20), health.ReportFailure("p", PeerFailureKind.Unreachable));
        Assert.Equal(TimeSpan.FromSeconds(30), health.ReportFailure("p", PeerFailureKind.Mismatch));
        Assert.Equal(TimeSpan.FromSeconds(30), health.ReportFailure("p", new PeerFailureKind("custom")));
        Assert.Equal(4, policy.Failures("p"));
        Assert.Equal(TimeSpan.FromSeconds(10), health.ReportFailure("q", PeerFailureKind.ErrorAnswer));
        Assert.Equal(["p", "q"], health.GetBannedPeers().Order(StringComparer.Ordinal));

        health.ReportSuccess("p");
        Assert.Equal(["q"], health.GetBannedPeers());
        Assert.Equal(0, policy.Failures("p"));
        Assert.Equal(TimeSpan.FromSeconds(10), health.ReportFailure("p", PeerFailureKind.Timeout));
    }

    [Fact]
    public void Without_options_the_first_ban_is_15_seconds_and_bad_options_are_refused_naming_the_option()
    {
        Assert.Equal(TimeSpan.FromSeconds(15), new PeerHealthPolicy().ReportFailure("p", PeerFailureKind.Timeout));
        var error = Assert.Throws<ArgumentOutOfRangeException>(
            () => new PeerHealthPolicy(new PeerHealthOptions { BanBase = TimeSpan.FromSeconds(10), BanCap = TimeSpan.FromSeconds(5) }));
        Assert.Equal("BanCap", error.ParamName);
    }

    [Fact]
    public void Round_trips_are_smoothed_per_peer_and_read_as_a_snapshot()
    {
        IPeerHealth health = new PeerHealthPolicy(new PeerHealthOptions { RttSmoothing = 0.25 });
        health.ReportRoundTrip("p", TimeSpan.FromMilliseconds(100));
        var before = health.GetRoundTripTimes();
        health.ReportRoundTrip("p", TimeSpan.FromMilliseconds(200));
        health.ReportRoundTrip("q", TimeSpan.FromMilliseconds(40));
        Assert.Equal(TimeSpan.FromMilliseconds(100), Assert.Single(before).Value);
        Assert.Equal(TimeSpan.FromMilliseconds(125), health.GetRoundTripTimes()["p"]);
        health.ReportRoundTrip("p", TimeSpan.Zero);
        Assert.Equal(TimeSpan.FromMilliseconds(93.75), health.GetRoundTripTimes()["p"]);
        Assert.Equal(TimeSpan.FromMilliseconds(40), health.GetRoundTripTimes()["q"]);

        // Failures and successes leave round trips alone.
        health.ReportFailure("q", PeerFailureKind.Timeout);
        health.ReportSuccess("q");
        Assert.Equal(TimeSpan.FromMilliseconds(40), health.GetRoundTripTimes()["q"]);
        Assert.Throws<ArgumentOutOfRangeException>(() => health.ReportRoundTrip("p", TimeSpan.FromTicks(-1)));
        Assert.Throws<ArgumentException>(() => health.ReportRoundTrip("", TimeSpan.Zero));
    }

    [Fact]
    public async Task Routes_read_the_bans_and_round_trips_of_the_health_given_to_the_sequence_manager()
    {
        var discovery = new StaticPeerDiscovery("m", 4, [Server("fast", 1000), Server("slow", 10)]);
        Assert.Equal(["fast"], await RouteAsync(discovery, health: null));

        var banning = new FixedHealth(banned: new HashSet<string> { "fast" }, rtts: new Dictionary<string, TimeSpan>());
        Assert.Equal(["slow"], await RouteAsync(discovery, banning));

        var far = new FixedHealth(banned: new HashSet<string>(), rtts: new Dictionary<string, TimeSpan> { ["fast"] = TimeSpan.FromSeconds(10) });
        Assert.Equal(["slow"], await RouteAsync(discovery, far));
    }

    [Fact]
    public async Task A_recovery_reports_the_failed_server_with_its_kind_to_the_health_given_to_the_sequence_manager()
    {
        await using var rig = await ClientRig.StartAsync(2, [new(0, 2), new(0, 2)]);
        var health = new RecordingPeerHealth();
        var sequence = await rig.StartSequenceAsync([rig.Swarm.Info(0) with { Throughput = 1000 }, rig.Swarm.Info(1)], health);
        Assert.Same(health, sequence.Health);
        var client = rig.Swarm.Transport.WithShaping(new NetworkShapingOptions());
        await using var remote = await RemoteTransformerBlocks.ConnectAsync(client, sequence, rig.Config, cancellationToken: Ct).WaitAsync(Bound, Ct);
        Assert.Equal(["server-0"], remote.Spans.Select(s => s.PeerId));
        await using var session = await remote.OpenSessionAsync(1, 8, Ct);
        await session.ForwardAsync(new float[2 * rig.Config.HiddenSize], 2, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Empty(health.Failures);

        client.AbortStreams(rig.Swarm.Addresses[0], "test: connection broken");
        await session.ForwardAsync(new float[rig.Config.HiddenSize], 1, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(1, remote.Recoveries);
        Assert.Equal([("server-0", PeerFailureKind.ConnectionLost)], health.Failures);
        Assert.Contains("server-0", sequence.BannedPeers);
        Assert.Equal(["server-1"], remote.Spans.Select(s => s.PeerId));
    }

    private static async Task<IEnumerable<string>> RouteAsync(StaticPeerDiscovery discovery, IPeerHealth? health)
    {
        await using var sequence = new SwarmSequenceManager(discovery, "m", 4, health: health);
        await sequence.StartAsync(Ct).WaitAsync(Bound, Ct);
        if (health is not null)
        {
            Assert.Same(health, sequence.Health);
            Assert.Equal(health.GetBannedPeers(), sequence.BannedPeers);
        }

        return [.. sequence.RouteInference(1, 16).Select(s => s.Server.PeerId)];
    }

    private static ServerInfo Server(string peerId, double throughput) => new()
    {
        PeerId = peerId,
        Address = PeerAddress.Parse($"mem://{peerId}"),
        State = ServerState.Online,
        Span = new BlockRange(0, 4),
        Throughput = throughput,
        CacheTokensLeft = 4096,
    };

    /// <summary>A health that bans and measures what it is told, whatever is reported.</summary>
    private sealed class FixedHealth(IReadOnlySet<string> banned, IReadOnlyDictionary<string, TimeSpan> rtts) : IPeerHealth
    {
        public void ReportSuccess(string peerId)
        {
        }

        public TimeSpan ReportFailure(string peerId, PeerFailureKind kind) => TimeSpan.Zero;

        public void ReportRoundTrip(string peerId, TimeSpan roundTrip)
        {
        }

        public IReadOnlySet<string> GetBannedPeers() => banned;

        public IReadOnlyDictionary<string, TimeSpan> GetRoundTripTimes() => rtts;
    }
}
