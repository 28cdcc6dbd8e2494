using Petals.Discovery;
using Petals.Models;
using Petals.Tensors;
using Petals.Testing.Time;
using Petals.Transport;

namespace Petals.Testing.Conformance;

/// <summary>The peers of one discovery swarm under test, and what to dispose when the test ends.</summary>
public sealed class PeerDiscoveryUnderTest : IAsyncDisposable
{
    private readonly Func<ValueTask>? _dispose;

    /// <summary>Wraps the peers of a swarm.</summary>
    /// <param name="peers">The peers, each its own <see cref="IPeerDiscovery"/> with its own peer id, all in one swarm.</param>
    /// <param name="dispose">Stops the swarm (nodes, transports), or null when there is nothing to stop.</param>
    public PeerDiscoveryUnderTest(IReadOnlyList<IPeerDiscovery> peers, Func<ValueTask>? dispose = null)
    {
        Peers = peers;
        _dispose = dispose;
    }

    /// <summary>The peers.</summary>
    public IReadOnlyList<IPeerDiscovery> Peers { get; }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _dispose?.Invoke() ?? ValueTask.CompletedTask;
}

/// <summary>
/// The behaviour every <see cref="IPeerDiscovery"/> must have. Each implementation's test project subclasses this
/// once (linked source: tests/DiscoveryConformance) and says how to create a swarm of peers. Every test announces
/// through one peer and reads through another, as servers and clients of a real swarm do.
/// </summary>
public abstract class PeerDiscoveryConformanceTests
{
    /// <summary>When every test's clock starts (whole milliseconds, so expirations compare exactly).</summary>
    protected static readonly DateTimeOffset Start = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private const string Model = "conformance-model";
    private static readonly TimeSpan Ttl = TimeSpan.FromMinutes(3);

    private ManualTimeProvider? _clock;

    /// <summary>How long any single operation may take before it is a failure.</summary>
    protected virtual TimeSpan Bound => TimeSpan.FromSeconds(60);

    /// <summary>
    /// Whether the swarm runs on the clock given to <see cref="CreateSwarmAsync"/>. When false, the expiry tests are
    /// skipped (saying why) and expirations are checked against the system clock.
    /// </summary>
    protected virtual bool UsesInjectedClock => true;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>The time now on the swarm's clock (the test's manual clock, or the system clock).</summary>
    private DateTimeOffset Now => UsesInjectedClock ? _clock!.GetUtcNow() : TimeProvider.System.GetUtcNow();

    /// <summary>Creates a fresh swarm of <paramref name="peerCount"/> peers with distinct peer ids.</summary>
    /// <param name="peerCount">How many peers the test needs (2 to 8).</param>
    /// <param name="clock">The clock every peer must run on (expirations are computed and judged by it).</param>
    /// <returns>The peers and how to stop them.</returns>
    protected abstract ValueTask<PeerDiscoveryUnderTest> CreateSwarmAsync(int peerCount, ManualTimeProvider clock);

    /// <summary>
    /// Moves the swarm's clock forward. The default advances <paramref name="clock"/>; override when the implementation
    /// needs more for time to pass (e.g. letting background work settle).
    /// </summary>
    /// <param name="clock">The swarm's clock.</param>
    /// <param name="delta">How far to move it.</param>
    /// <returns>A task that completes when time has moved.</returns>
    protected virtual ValueTask AdvanceAsync(ManualTimeProvider clock, TimeSpan delta)
    {
        clock.Advance(delta);
        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task Each_peer_has_its_own_non_empty_peer_id()
    {
        await using var swarm = await CreateAsync(4);
        var ids = swarm.Peers.Select(p => p.LocalPeerId).ToArray();
        Assert.All(ids, id => Assert.False(string.IsNullOrEmpty(id)));
        Assert.Equal(ids.Length, ids.Distinct(StringComparer.Ordinal).Count());
    }

    [Fact]
    public async Task An_announcement_is_read_back_under_every_block_of_its_span_and_no_other()
    {
        await using var swarm = await CreateAsync(2);
        var (server, reader) = (swarm.Peers[0], swarm.Peers[1]);
        Assert.Equal(3, await Bounded(server.AnnounceAsync(Model, 8, Info(server, 2, 5), Ttl, Ct)));

        var blocks = await Bounded(reader.GetServersAsync(Model, new BlockRange(0, 8), Ct));
        for (var b = 0; b < 8; b++)
        {
            if (b is >= 2 and < 5)
            {
                Assert.Equal(server.LocalPeerId, Assert.Single(blocks[b].Servers).PeerId);
            }
            else
            {
                Assert.Empty(blocks[b].Servers);
            }
        }

        // Another model's blocks are another model's.
        Assert.All(await Bounded(reader.GetServersAsync(Model + "-other", new BlockRange(0, 8), Ct)), b => Assert.Empty(b.Servers));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Every_field_of_an_announcement_round_trips(bool withOptionalFields)
    {
        await using var swarm = await CreateAsync(3);
        var (server, reader) = (swarm.Peers[0], swarm.Peers[2]);
        var sent = new ServerInfo
        {
            PeerId = server.LocalPeerId,
            Address = PeerAddress.Parse("tcp://10.1.2.3:31337"),
            State = ServerState.Joining,
            Span = new BlockRange(1, 3),
            Throughput = 123.25,
            CacheTokensLeft = 1L << 40,
            DType = TensorDType.BF16,
            Version = "9.8.7-conformance",
            PublicName = withOptionalFields ? "lab-ŝerver 🦙" : null,
            Quantization = withOptionalFields ? "q4_k+q6_k" : null,
            Adapters = withOptionalFields ? ["chat-v2", "style"] : [],
            NextServerRtts = withOptionalFields
                ? new Dictionary<string, TimeSpan> { [swarm.Peers[1].LocalPeerId] = TimeSpan.FromMilliseconds(12.5), ["another-peer"] = TimeSpan.FromMilliseconds(3) }
                : new Dictionary<string, TimeSpan>(),
            ExpiresAt = Start.AddYears(-20), // ignored when announcing
        };
        await Bounded(server.AnnounceAsync(Model, 4, sent, Ttl, Ct));
        var expiresAt = Now + Ttl;

        var blocks = await Bounded(reader.GetServersAsync(Model, new BlockRange(1, 3), Ct));
        foreach (var block in blocks)
        {
            // Record equality covers every field but the three that compare otherwise (a field added to ServerInfo later
            // is covered too): the round-trip table and the adapters by content, the expiration against the clock.
            var got = Assert.Single(block.Servers);
            Assert.Equal(sent with { NextServerRtts = got.NextServerRtts, Adapters = got.Adapters, ExpiresAt = got.ExpiresAt }, got);
            Assert.Equal(sent.Adapters, got.Adapters);
            Assert.Equal(sent.NextServerRtts.OrderBy(p => p.Key, StringComparer.Ordinal), got.NextServerRtts.OrderBy(p => p.Key, StringComparer.Ordinal));
            AssertExpiration(expiresAt, got.ExpiresAt);
        }
    }

    [Fact]
    public async Task An_announcement_is_a_snapshot_of_the_info_at_the_time_of_the_call()
    {
        await using var swarm = await CreateAsync(2);
        var (server, reader) = (swarm.Peers[0], swarm.Peers[1]);
        var rtts = new Dictionary<string, TimeSpan> { ["next"] = TimeSpan.FromMilliseconds(5) };
        await Bounded(server.AnnounceAsync(Model, 2, Info(server, 0, 2) with { NextServerRtts = rtts }, Ttl, Ct));
        rtts["next"] = TimeSpan.FromSeconds(9);
        rtts["added-later"] = TimeSpan.FromSeconds(1);

        var got = Assert.Single((await Bounded(reader.GetServersAsync(Model, new BlockRange(0, 1), Ct)))[0].Servers);
        Assert.Equal([new KeyValuePair<string, TimeSpan>("next", TimeSpan.FromMilliseconds(5))], got.NextServerRtts);
    }

    [Fact]
    public async Task A_later_announcement_by_the_same_peer_replaces_the_earlier_one_even_with_a_shorter_time_to_live()
    {
        await using var swarm = await CreateAsync(2);
        var (server, reader) = (swarm.Peers[0], swarm.Peers[1]);
        await Bounded(server.AnnounceAsync(Model, 4, Info(server, 0, 4, ServerState.Joining), Ttl, Ct));
        await Bounded(server.AnnounceAsync(Model, 4, Info(server, 0, 4, ServerState.Online, throughput: 42), Ttl, Ct));
        var online = await ReadSingleServersAsync(reader, new BlockRange(0, 4));
        Assert.All(online, s => Assert.Equal((ServerState.Online, 42.0), (s.State, s.Throughput)));

        await Bounded(server.AnnounceAsync(Model, 4, Info(server, 0, 4, ServerState.Offline), TimeSpan.FromSeconds(10), Ct));
        Assert.All(await ReadSingleServersAsync(reader, new BlockRange(0, 4)), s => Assert.Equal(ServerState.Offline, s.State));

        // Replacing does not count the server twice in the model index.
        Assert.Equal([new SwarmModelInfo(Model, 4, 1)], await Bounded(reader.GetModelsAsync(Ct)));
    }

    [Fact]
    public async Task A_later_announcement_replaces_the_earlier_one_on_each_block_of_its_new_span()
    {
        await using var swarm = await CreateAsync(2);
        var (server, reader) = (swarm.Peers[0], swarm.Peers[1]);
        await Bounded(server.AnnounceAsync(Model, 6, Info(server, 0, 3), Ttl, Ct));
        await Bounded(server.AnnounceAsync(Model, 6, Info(server, 2, 6), Ttl, Ct));
        var blocks = await Bounded(reader.GetServersAsync(Model, new BlockRange(2, 6), Ct));
        Assert.All(blocks, b => Assert.Equal(new BlockRange(2, 6), Assert.Single(b.Servers).Span));
    }

    [Fact]
    public async Task Two_peers_on_the_same_blocks_are_both_listed()
    {
        await using var swarm = await CreateAsync(3);
        var (a, b, reader) = (swarm.Peers[0], swarm.Peers[1], swarm.Peers[2]);
        await Bounded(a.AnnounceAsync(Model, 6, Info(a, 0, 4), Ttl, Ct));
        await Bounded(b.AnnounceAsync(Model, 6, Info(b, 2, 6, throughput: 7), Ttl, Ct));

        var blocks = await Bounded(reader.GetServersAsync(Model, new BlockRange(0, 6), Ct));
        string[][] expected =
        [
            [a.LocalPeerId], [a.LocalPeerId], [a.LocalPeerId, b.LocalPeerId], [a.LocalPeerId, b.LocalPeerId], [b.LocalPeerId], [b.LocalPeerId],
        ];
        for (var i = 0; i < 6; i++)
        {
            Assert.Equal(expected[i].Order(StringComparer.Ordinal), PeerIds(blocks[i]));
        }

        Assert.Equal(7, blocks[3].Servers.Single(s => s.PeerId == b.LocalPeerId).Throughput);
        Assert.Equal([new SwarmModelInfo(Model, 6, 2)], await Bounded(reader.GetModelsAsync(Ct)));
    }

    [Fact]
    public async Task Reading_returns_one_entry_per_block_in_order_with_empty_lists_where_nobody_announced()
    {
        await using var swarm = await CreateAsync(2);
        var (server, reader) = (swarm.Peers[0], swarm.Peers[1]);
        await Bounded(server.AnnounceAsync(Model, 5, Info(server, 3, 5), Ttl, Ct));

        var tail = await Bounded(reader.GetServersAsync(Model, new BlockRange(2, 9), Ct));
        Assert.Equal([2, 3, 4, 5, 6, 7, 8], tail.Select(b => b.Block));
        Assert.Equal([0, 1, 1, 0, 0, 0, 0], tail.Select(b => b.Servers.Count));

        var unknown = await Bounded(reader.GetServersAsync("nobody-serves-this", new BlockRange(0, 3), Ct));
        Assert.Equal([0, 1, 2], unknown.Select(b => b.Block));
        Assert.All(unknown, b => Assert.Empty(b.Servers));
    }

    [Fact]
    public async Task An_announcement_is_visible_until_its_expiration_and_gone_at_it()
    {
        SkipUnlessInjectedClock();
        var clock = new ManualTimeProvider(Start);
        await using var swarm = await CreateAsync(3, clock);
        var (shortLived, longLived, reader) = (swarm.Peers[0], swarm.Peers[1], swarm.Peers[2]);
        await Bounded(shortLived.AnnounceAsync(Model, 2, Info(shortLived, 0, 2), TimeSpan.FromSeconds(30), Ct));
        await Bounded(longLived.AnnounceAsync(Model, 2, Info(longLived, 0, 2), TimeSpan.FromMinutes(10), Ct));

        await AdvanceAsync(clock, TimeSpan.FromSeconds(30) - TimeSpan.FromMilliseconds(1));
        Assert.All(await Bounded(reader.GetServersAsync(Model, new BlockRange(0, 2), Ct)), b => Assert.Equal(2, b.Servers.Count));
        Assert.Equal(2, Assert.Single(await Bounded(reader.GetModelsAsync(Ct))).ServerCount);

        await AdvanceAsync(clock, TimeSpan.FromMilliseconds(1));
        Assert.All(await Bounded(reader.GetServersAsync(Model, new BlockRange(0, 2), Ct)), b => Assert.Equal(longLived.LocalPeerId, Assert.Single(b.Servers).PeerId));
        Assert.Equal([new SwarmModelInfo(Model, 2, 1)], await Bounded(reader.GetModelsAsync(Ct)));

        await AdvanceAsync(clock, TimeSpan.FromMinutes(10));
        Assert.All(await Bounded(reader.GetServersAsync(Model, new BlockRange(0, 2), Ct)), b => Assert.Empty(b.Servers));
        Assert.Empty(await Bounded(reader.GetModelsAsync(Ct)));
    }

    [Fact]
    public async Task Announcing_again_before_the_expiration_keeps_the_announcement_alive()
    {
        SkipUnlessInjectedClock();
        var clock = new ManualTimeProvider(Start);
        await using var swarm = await CreateAsync(2, clock);
        var (server, reader) = (swarm.Peers[0], swarm.Peers[1]);
        var ttl = TimeSpan.FromSeconds(30);
        for (var round = 0; round < 4; round++)
        {
            await Bounded(server.AnnounceAsync(Model, 3, Info(server, 0, 3), ttl, Ct));
            var expiresAt = clock.GetUtcNow() + ttl;
            await AdvanceAsync(clock, TimeSpan.FromSeconds(20));
            Assert.All(await ReadSingleServersAsync(reader, new BlockRange(0, 3)), s => Assert.Equal(expiresAt, s.ExpiresAt));
        }

        await AdvanceAsync(clock, TimeSpan.FromSeconds(10));
        Assert.All(await Bounded(reader.GetServersAsync(Model, new BlockRange(0, 3), Ct)), b => Assert.Empty(b.Servers));
    }

    [Fact]
    public async Task The_model_index_lists_announced_models_ordered_by_id_with_block_and_server_counts()
    {
        await using var swarm = await CreateAsync(4);
        var reader = swarm.Peers[3];
        Assert.Empty(await Bounded(reader.GetModelsAsync(Ct)));

        // Ordinal order, character by character: upper case before lower case, and "m-10" before "m-2".
        await Bounded(swarm.Peers[0].AnnounceAsync("m-2", 3, Info(swarm.Peers[0], 0, 3), Ttl, Ct));
        await Bounded(swarm.Peers[1].AnnounceAsync("m-2", 3, Info(swarm.Peers[1], 1, 2), Ttl, Ct));
        await Bounded(swarm.Peers[2].AnnounceAsync("m-10", 12, Info(swarm.Peers[2], 0, 12), Ttl, Ct));
        await Bounded(reader.AnnounceAsync("Zeta", 1, Info(reader, 0, 1), Ttl, Ct));

        Assert.Equal(
            [new SwarmModelInfo("Zeta", 1, 1), new SwarmModelInfo("m-10", 12, 1), new SwarmModelInfo("m-2", 3, 2)],
            await Bounded(swarm.Peers[0].GetModelsAsync(Ct)));
    }

    [Fact]
    public async Task A_model_id_of_the_longest_allowed_length_in_utf8_bytes_is_accepted()
    {
        await using var swarm = await CreateAsync(2);
        var (server, reader) = (swarm.Peers[0], swarm.Peers[1]);
        var longest = new string('é', AnnouncementLimits.MaxModelIdBytes / 2); // two UTF-8 bytes each
        Assert.Equal(2, await Bounded(server.AnnounceAsync(longest, 2, Info(server, 0, 2), Ttl, Ct)));
        Assert.All(await Bounded(reader.GetServersAsync(longest, new BlockRange(0, 2), Ct)), b => Assert.Single(b.Servers));
        Assert.Equal([new SwarmModelInfo(longest, 2, 1)], await Bounded(reader.GetModelsAsync(Ct)));
    }

    [Fact]
    public async Task Bad_arguments_are_refused_precisely_and_announce_nothing()
    {
        await using var swarm = await CreateAsync(2);
        var (peer, other) = (swarm.Peers[0], swarm.Peers[1]);
        var good = Info(peer, 0, 2);
        var tooLong = new string('é', (AnnouncementLimits.MaxModelIdBytes / 2) + 1);

        await Refused<ArgumentNullException>("info", () => peer.AnnounceAsync(Model, 5, null!, Ttl, Ct));
        await Refused<ArgumentNullException>("modelId", () => peer.AnnounceAsync(null!, 5, good, Ttl, Ct));
        await Refused<ArgumentException>("modelId", () => peer.AnnounceAsync(string.Empty, 5, good, Ttl, Ct));
        await Refused<ArgumentException>("modelId", () => peer.AnnounceAsync(tooLong, 5, good, Ttl, Ct));
        await Refused<ArgumentException>("info", () => peer.AnnounceAsync(Model, 5, good with { PeerId = other.LocalPeerId }, Ttl, Ct));
        await Refused<ArgumentException>("info", () => peer.AnnounceAsync(Model, 5, Info(peer, 3, 6), Ttl, Ct));
        await Refused<ArgumentOutOfRangeException>("blockCount", () => peer.AnnounceAsync(Model, 0, good, Ttl, Ct));
        await Refused<ArgumentOutOfRangeException>("blockCount", () => peer.AnnounceAsync(Model, AnnouncementLimits.MaxBlockCount + 1, good, Ttl, Ct));
        await Refused<ArgumentOutOfRangeException>("timeToLive", () => peer.AnnounceAsync(Model, 5, good, TimeSpan.Zero, Ct));
        await Refused<ArgumentOutOfRangeException>("timeToLive", () => peer.AnnounceAsync(Model, 5, good, TimeSpan.FromSeconds(-1), Ct));
        await Refused<ArgumentNullException>("modelId", () => other.GetServersAsync(null!, new BlockRange(0, 1), Ct));
        await Refused<ArgumentException>("modelId", () => other.GetServersAsync(string.Empty, new BlockRange(0, 1), Ct));
        await Refused<ArgumentException>("modelId", () => other.GetServersAsync(tooLong, new BlockRange(0, 1), Ct));

        Assert.Empty(await Bounded(other.GetModelsAsync(Ct)));
        Assert.All(await Bounded(other.GetServersAsync(Model, new BlockRange(0, 6), Ct)), b => Assert.Empty(b.Servers));
    }

    [Fact]
    public async Task An_invalid_announcement_is_refused_and_announces_nothing()
    {
        await using var swarm = await CreateAsync(2);
        var (peer, reader) = (swarm.Peers[0], swarm.Peers[1]);
        var good = Info(peer, 0, 2);
        ServerInfo[] invalid =
        [
            good with { Address = default },
            good with { State = (ServerState)77 },
            good with { DType = (TensorDType)200 },
            good with { Throughput = -1 },
            good with { Throughput = double.NaN },
            good with { Throughput = double.PositiveInfinity },
            good with { CacheTokensLeft = -1 },
            good with { NextServerRtts = new Dictionary<string, TimeSpan> { ["next"] = TimeSpan.FromMilliseconds(-1) } },
        ];
        foreach (var info in invalid)
        {
            var e = await Assert.ThrowsAnyAsync<ArgumentException>(() => peer.AnnounceAsync(Model, 2, info, Ttl, Ct));
            Assert.StartsWith("info", e.ParamName, StringComparison.Ordinal);
        }

        Assert.Empty(await Bounded(reader.GetModelsAsync(Ct)));
        Assert.All(await Bounded(reader.GetServersAsync(Model, new BlockRange(0, 2), Ct)), b => Assert.Empty(b.Servers));
    }

    [Fact]
    public async Task A_cancelled_call_surfaces_as_cancellation_and_announces_nothing()
    {
        await using var swarm = await CreateAsync(2);
        var (peer, reader) = (swarm.Peers[0], swarm.Peers[1]);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Bounded(peer.AnnounceAsync(Model, 2, Info(peer, 0, 2), Ttl, cancelled.Token)));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Bounded(reader.GetServersAsync(Model, new BlockRange(0, 2), cancelled.Token)));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Bounded(reader.GetModelsAsync(cancelled.Token)));

        Assert.Empty(await Bounded(reader.GetModelsAsync(Ct)));
        Assert.All(await Bounded(reader.GetServersAsync(Model, new BlockRange(0, 2), Ct)), b => Assert.Empty(b.Servers));
    }

    [Fact]
    public async Task Concurrent_announcements_of_many_peers_are_all_read_back()
    {
        await using var swarm = await CreateAsync(8);
        var peers = swarm.Peers;
        await Bounded(Task.WhenAll(peers.Select((p, i) => p.AnnounceAsync(Model, 4, Info(p, i % 2, (i % 2) + 3, throughput: i + 1), Ttl, Ct))));

        var readers = await Bounded(Task.WhenAll(peers.Select(p => p.GetServersAsync(Model, new BlockRange(0, 4), Ct))));
        foreach (var blocks in readers)
        {
            for (var b = 0; b < 4; b++)
            {
                var expected = peers.Where((_, i) => b >= i % 2 && b < (i % 2) + 3).Select(p => p.LocalPeerId).Order(StringComparer.Ordinal);
                Assert.Equal(expected, PeerIds(blocks[b]));
            }
        }

        Assert.Equal([new SwarmModelInfo(Model, 4, peers.Count)], await Bounded(peers[0].GetModelsAsync(Ct)));
    }

    private static ServerInfo Info(IPeerDiscovery peer, int start, int end, ServerState state = ServerState.Online, double throughput = 10) => new()
    {
        PeerId = peer.LocalPeerId,
        Address = PeerAddress.Parse($"tcp://127.0.0.1:{5000 + start}"),
        State = state,
        Span = new BlockRange(start, end),
        Throughput = throughput,
        CacheTokensLeft = 4096,
        Version = "conformance",
    };

    /// <summary>The peer ids listed for a block, in ordinal order (the order within a block is not part of the contract).</summary>
    private static IEnumerable<string> PeerIds(BlockServers block) => block.Servers.Select(s => s.PeerId).Order(StringComparer.Ordinal);

    private static async Task Refused<TException>(string paramName, Func<Task> call)
        where TException : ArgumentException
    {
        var e = await Assert.ThrowsAsync<TException>(call);
        Assert.Equal(paramName, e.ParamName);
    }

    private void SkipUnlessInjectedClock()
    {
        if (!UsesInjectedClock)
        {
            Assert.Skip("The implementation runs on its own clock, so expiry cannot be tested without waiting.");
        }
    }

    private void AssertExpiration(DateTimeOffset expected, DateTimeOffset actual)
    {
        if (UsesInjectedClock)
        {
            Assert.Equal(expected, actual);
        }
        else
        {
            // The system clock moved between the announcement and the reading of Now; expirations may be truncated to ms.
            Assert.InRange(actual, expected - Bound - TimeSpan.FromMilliseconds(1), expected + TimeSpan.FromMilliseconds(1));
        }
    }

    private async Task<ServerInfo[]> ReadSingleServersAsync(IPeerDiscovery reader, BlockRange blocks) =>
        (await Bounded(reader.GetServersAsync(Model, blocks, Ct))).Select(b => Assert.Single(b.Servers)).ToArray();

    private ValueTask<PeerDiscoveryUnderTest> CreateAsync(int peerCount) => CreateAsync(peerCount, new ManualTimeProvider(Start));

    private async ValueTask<PeerDiscoveryUnderTest> CreateAsync(int peerCount, ManualTimeProvider clock)
    {
        _clock = clock;
        var swarm = await CreateSwarmAsync(peerCount, clock).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(peerCount, swarm.Peers.Count);
        return swarm;
    }

    private async Task<T> Bounded<T>(Task<T> task) => await task.WaitAsync(Bound, Ct);

    private async Task Bounded(Task task) => await task.WaitAsync(Bound, Ct);
}
