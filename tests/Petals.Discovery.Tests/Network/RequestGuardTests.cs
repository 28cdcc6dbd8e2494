using Petals.Testing.Time;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Network;

/// <summary>The bounded replay cache and token buckets behind a node's request checks.</summary>
public sealed class RequestGuardTests
{
    private static byte[] Nonce(byte b)
    {
        var nonce = new byte[DhtMessageCodec.NonceSize];
        nonce[0] = b;
        return nonce;
    }

    [Fact]
    public void The_replay_cache_refuses_a_nonce_twice_is_bounded_and_forgets_after_twice_the_window()
    {
        var time = new ManualTimeProvider(Start);
        var cache = new ReplayCache(capacity: 2, TimeSpan.FromSeconds(60), time);
        Assert.Equal(ReplayCache.Outcome.Added, cache.TryAdd(Nonce(1)));
        Assert.Equal(ReplayCache.Outcome.Replayed, cache.TryAdd(Nonce(1)));
        Assert.Equal(ReplayCache.Outcome.Added, cache.TryAdd(Nonce(2)));
        Assert.Equal(ReplayCache.Outcome.Full, cache.TryAdd(Nonce(3)));
        time.Advance(TimeSpan.FromSeconds(119));
        Assert.Equal(ReplayCache.Outcome.Replayed, cache.TryAdd(Nonce(1)));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(ReplayCache.Outcome.Added, cache.TryAdd(Nonce(3)));
        Assert.Equal(ReplayCache.Outcome.Added, cache.TryAdd(Nonce(1)));
    }

    [Fact]
    public void Token_buckets_refill_at_their_rate_and_track_a_bounded_number_of_keys()
    {
        var time = new ManualTimeProvider(Start);
        var buckets = new TokenBuckets<string>(ratePerSecond: 10, burst: 20, maxKeys: 2, time);
        Assert.True(buckets.TryTake("a", 20));
        Assert.False(buckets.TryTake("a", 1));
        time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.True(buckets.TryTake("a", 1));
        Assert.False(buckets.TryTake("a", 1));
        Assert.True(buckets.TryTake("b", 5));

        // Both tracked keys are spent: a third is refused until one of them has refilled, which then makes room.
        Assert.False(buckets.TryTake("c", 1));
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.True(buckets.TryTake("c", 1));
        Assert.Equal(1, buckets.Count);
    }

    [Fact]
    public async Task A_node_with_no_room_for_verifications_answers_new_requesters_but_does_not_add_them()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork(new DhtNodeOptions { MaxPendingVerifications = 0 });
        var a = await network.AddAsync(null, ct);
        var b = await network.AddAsync(null, ct);
        Assert.Equal(1, await b.BootstrapAsync([a.LocalAddress], ct).WaitAsync(DhtTestNetwork.Bound, ct));
        await DhtTestNetwork.QuiesceAsync(network.Nodes, ct);
        Assert.NotNull(b.Routing.Find(a.Id));
        Assert.Null(a.Routing.Find(b.Id));
        Assert.Equal(0, a.ContactsVerified);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DhtNodeOptions { MaxPendingVerifications = -1 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new DhtNodeOptions { PuzzleDifficulty = 41 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new DhtNodeOptions { SenderRequestsPerSecond = 0 }.Validate());
    }
}
