using FsCheck;
using FsCheck.Fluent;
using Petals.Protocol;
using Petals.Server;
using Petals.Testing.Time;
using Petals.Transport;

namespace Petals.Tests.Server;

/// <summary>
/// Cache fairness: one peer may claim (hold and wait for) at most its share of the budget; a request beyond it is
/// refused at once with the retryable <c>cache_busy</c>; others wait in arrival order for what holders return.
/// </summary>
public sealed class CacheFairnessTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(30);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task APeerOverItsShareIsRefusedAtOnceWithCacheBusyWhileAnotherPeerIsServed()
    {
        var budget = new CacheBudget(100, new ManualTimeProvider(), peerLimit: 50);
        using var a1 = await budget.ReserveAsync(30, "10.0.0.1", Long, Ct);
        var ex = await Assert.ThrowsAsync<ProtocolException>(async () => await budget.ReserveAsync(30, "10.0.0.1", Long, Ct));
        Assert.Equal(ProtocolErrorCode.CacheBusy, ex.Code);
        Assert.Equal(
            "cache share exceeded: peer 10.0.0.1 holds or waits for 30 tokens and this session needs 30 more; one peer may hold at most 50 of 100; retry on another server or after a session of this peer ends",
            ex.Message);
        Assert.Equal(70, budget.Free); // refused without taking anything
        Assert.Equal(0, budget.Waiting);

        using var a2 = await budget.ReserveAsync(20, "10.0.0.1", Long, Ct); // up to the share exactly
        using var b = await budget.ReserveAsync(50, "10.0.0.2", Long, Ct);
        Assert.Equal(0, budget.Free);
        Assert.Equal(50, budget.ClaimedBy("10.0.0.1"));
        Assert.Equal(50, budget.ClaimedBy("10.0.0.2"));
        Assert.Equal(1, budget.RefusedOverShare);
        Assert.Equal(0, budget.RefusedTimedOut);
    }

    [Fact]
    public async Task WaitingClaimsCountAgainstTheShareAndAHolderNeverJumpsTheQueue()
    {
        var budget = new CacheBudget(100, new ManualTimeProvider(), peerLimit: 60);
        var held = await budget.ReserveAsync(50, "A", Long, Ct);
        var b = budget.ReserveAsync(60, "B", Long, Ct).AsTask();
        Assert.False(b.IsCompleted);

        // A asks for 20 more: held 50 + 20 > 60, refused at once, not queued.
        var over = await Assert.ThrowsAsync<ProtocolException>(async () => await budget.ReserveAsync(20, "A", Long, Ct));
        Assert.Equal(ProtocolErrorCode.CacheBusy, over.Code);

        // A asks for 10: within its share and 50 tokens are free, but B came first: A waits behind it.
        var a = budget.ReserveAsync(10, "A", Long, Ct).AsTask();
        Assert.False(a.IsCompleted);
        Assert.Equal(2, budget.Waiting);
        Assert.Equal(60, budget.ClaimedBy("A"));
        Assert.Equal(60, budget.ClaimedBy("B"));

        held.Dispose();
        var bGranted = await b.WaitAsync(Long, Ct);
        var aGranted = await a.WaitAsync(Long, Ct);
        Assert.Equal(30, budget.Free);
        Assert.Equal(10, budget.ClaimedBy("A"));
        bGranted.Dispose();
        aGranted.Dispose();
        Assert.Equal(100, budget.Free);
        Assert.Equal(0, budget.ClaimedBy("A"));
        Assert.Equal(0, budget.ClaimedBy("B"));
        Assert.Equal(1, budget.RefusedOverShare);
    }

    [Fact]
    public async Task AWaiterThatTimesOutGetsCacheExhaustedLeavesNoClaimAndIsCounted()
    {
        var time = new ManualTimeProvider();
        var budget = new CacheBudget(100, time, peerLimit: 50);
        using var a = await budget.ReserveAsync(50, "A", Long, Ct);
        using var b = await budget.ReserveAsync(50, "B", Long, Ct);
        var c = budget.ReserveAsync(40, "C", TimeSpan.FromSeconds(5), Ct).AsTask();
        Assert.Equal(40, budget.ClaimedBy("C"));
        time.Advance(TimeSpan.FromSeconds(5));
        var ex = await Assert.ThrowsAsync<ProtocolException>(() => c.WaitAsync(Long, Ct));
        Assert.Equal(ProtocolErrorCode.CacheExhausted, ex.Code);
        Assert.Equal("cache full: the session needs 40 tokens, 0 of 100 are free", ex.Message);
        Assert.Equal(0, budget.ClaimedBy("C"));
        Assert.Equal(1, budget.RefusedTimedOut);

        // A request above the whole budget is counted apart.
        await Assert.ThrowsAsync<ProtocolException>(async () => await budget.ReserveAsync(101, "C", Long, Ct));
        Assert.Equal(1, budget.RefusedTooLarge);
        Assert.Equal(0, budget.RefusedOverShare);
    }

    [Fact]
    public async Task ACancelledWaiterGivesItsClaimBack()
    {
        var budget = new CacheBudget(10, new ManualTimeProvider(), peerLimit: 8);
        using var held = await budget.ReserveAsync(8, "A", Long, Ct);
        using var cts = new CancellationTokenSource();
        var waiting = budget.ReserveAsync(8, "B", Long, cts.Token).AsTask();
        Assert.Equal(8, budget.ClaimedBy("B"));
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(Long, Ct));
        Assert.Equal(0, budget.ClaimedBy("B"));
        Assert.Equal(0, budget.Waiting);
    }

    [Fact]
    public void NoInterleavingLetsAPeerClaimMoreThanItsShareAndTheAccountStaysExact()
    {
        // Ops: 0 = reserve (peer and size from the values), 1 = release the oldest held, 2 = advance time, 3 = cancel the oldest waiter.
        Prop.ForAll(
            Gen.ListOf(Gen.Zip(Gen.Choose(0, 3), Gen.Zip(Gen.Choose(0, 2), Gen.Choose(1, 30)))).ToArbitrary(),
            ops =>
            {
                const long capacity = 64, limit = 32;
                string[] peers = ["a", "b", "c"];
                var time = new ManualTimeProvider();
                var budget = new CacheBudget(capacity, time, limit);
                var held = new List<CacheReservation>();
                var waiting = new List<(Task<CacheReservation> Task, CancellationTokenSource Cts, string Peer, long Tokens)>();
                foreach (var (op, (peer, value)) in ops)
                {
                    switch (op)
                    {
                        case 0:
                            var cts = new CancellationTokenSource();
                            var claimedBefore = budget.ClaimedBy(peers[peer]);
                            try
                            {
                                waiting.Add((budget.ReserveAsync(value, peers[peer], TimeSpan.FromSeconds(1 + (value % 7)), cts.Token).AsTask(), cts, peers[peer], value));
                            }
                            catch (ProtocolException e)
                            {
                                // Refused at once exactly when the peer would pass its share.
                                Assert.Equal(ProtocolErrorCode.CacheBusy, e.Code);
                                Assert.True(claimedBefore + value > limit, $"{peers[peer]} claimed {claimedBefore} and asked {value}: refused within its share");
                                cts.Dispose();
                            }

                            break;
                        case 1 when held.Count > 0:
                            held[0].Dispose();
                            held.RemoveAt(0);
                            break;
                        case 2:
                            time.Advance(TimeSpan.FromSeconds(value % 5));
                            break;
                        case 3 when waiting.Count > 0:
                            waiting[0].Cts.Cancel();
                            break;
                    }

                    for (var i = waiting.Count - 1; i >= 0; i--)
                    {
                        var w = waiting[i];
                        if (w.Task.IsCompleted)
                        {
                            if (w.Task.IsCompletedSuccessfully)
                            {
                                held.Add(w.Task.Result);
                            }

                            w.Cts.Dispose();
                            waiting.RemoveAt(i);
                        }
                    }

                    foreach (var p in peers)
                    {
                        var claim = held.Where(r => r.PeerKey == p).Sum(r => r.Tokens) + waiting.Where(w => w.Peer == p).Sum(w => w.Tokens);
                        if (budget.ClaimedBy(p) != claim || claim > limit)
                        {
                            return false;
                        }
                    }

                    if (budget.Free != capacity - held.Sum(r => r.Tokens))
                    {
                        return false;
                    }
                }

                foreach (var w in waiting)
                {
                    w.Cts.Cancel();
                }

                foreach (var r in held)
                {
                    r.Dispose();
                }

                foreach (var w in waiting)
                {
                    if (w.Task.IsCompletedSuccessfully)
                    {
                        w.Task.Result.Dispose();
                    }

                    w.Cts.Dispose();
                }

                return budget.Free == capacity && budget.Waiting == 0 && peers.All(p => budget.ClaimedBy(p) == 0);
            }).QuickCheckThrowOnFailure();
    }

    [Theory]
    [InlineData(1000, 256, 0.5, 500)]
    [InlineData(1000, 256, 0.1, 256)] // the floor: one full-length session
    [InlineData(1000, 2048, 0.1, 1000)] // the floor never exceeds the budget
    [InlineData(1000, 256, 1.0, 1000)] // 1 turns the limit off
    [InlineData(999, 16, 0.5, 500)] // rounded up
    public void ThePerPeerLimitIsTheShareWithAFloorOfOneFullLengthSession(long cacheTokens, int maxLength, double share, long expected)
    {
        var options = new BlockServerOptions { CacheTokens = cacheTokens, MaxSessionLength = maxLength, MaxCacheShare = share };
        Assert.Equal(expected, options.CacheTokensPerPeer);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-0.5)]
    [InlineData(1.01)]
    [InlineData(double.NaN)]
    public void AShareOutsideZeroToOneIsRefused(double share)
    {
        var options = new BlockServerOptions { Blocks = new Models.BlockRange(0, 1), ModelId = "m", MaxCacheShare = share };
        var ex = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(nameof(BlockServerOptions.MaxCacheShare), ex.ParamName);
        Assert.Contains("must be in (0, 1]", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("tcp://127.0.0.1:5000", "127.0.0.1")]
    [InlineData("tcp://127.0.0.1:6001", "127.0.0.1")]
    [InlineData("tcp://[::1]:5", "::1")]
    [InlineData("quic://abc@10.1.2.3:443", "10.1.2.3")]
    [InlineData("mem://client-3", "client-3")]
    public void APeerKeyIsTheRemoteHostWithoutItsPort(string address, string key) =>
        Assert.Equal(key, CachePeerKey.Of(PeerAddress.Parse(address)));

    [Fact]
    public void AnEmptyAddressIsTheAnonymousPeer() => Assert.Equal(CachePeerKey.Anonymous, CachePeerKey.Of(default));

    [Fact]
    public async Task AGreedyClientHoldsAtMostItsShareAndAnotherClientIsServedAtOnce()
    {
        var time = new ManualTimeProvider();
        await using var h = await ServerHarness.StartAsync(o =>
        {
            o.CacheTokens = 100;
            o.MaxSessionLength = 40;
            o.MaxCacheShare = 0.5;
            o.TimeProvider = time;
        });
        Assert.Equal(50, h.Server.GetStatistics().CacheTokensPerPeer);
        await using var greedy = await h.ConnectAsync();
        var s1 = await BlockServerTests.Session.OpenAsync(greedy, h, maxLength: 25);
        var s2 = await BlockServerTests.Session.OpenAsync(greedy, h, maxLength: 25);
        var s3 = await BlockServerTests.Session.OpenAsync(greedy, h, maxLength: 25);
        await s1.StepAsync(1, 0, h.Input(1, 1, seed: 1), 1, 1);
        await s2.StepAsync(1, 0, h.Input(1, 1, seed: 1), 1, 1);
        await s3.SendStepAsync(1, 0, h.Input(1, 1, seed: 1), 1, 1);
        BlockServerTests.AssertError(await greedy.NextAsync(s3.StreamId), "cache_busy",
            "holds or waits for 50 tokens and this session needs 25 more; one peer may hold at most 50 of 100");

        // Another client gets the other half at once, though the greedy one asked first.
        await using var other = await h.ConnectAsync();
        var fair = await BlockServerTests.Session.OpenAsync(other, h, maxLength: 40);
        Assert.Equal(1, (await fair.StepAsync(1, 0, h.Input(1, 1, seed: 2), 1, 1)).Position);

        var stats = h.Server.GetStatistics();
        Assert.Equal(1, stats.CacheRefusedOverShare);
        Assert.Equal(0, stats.CacheRefusedTimedOut);
        Assert.Equal(10, stats.CacheTokensLeft);
        await ServerHarness.WaitUntil(() => h.Server.ActiveSessions == 3, "the refused session ended; the greedy client's two others go on");
        Assert.Equal(2, (await s1.StepAsync(2, 1, h.Input(1, 1, seed: 3), 1, 1)).Position);
    }

    [Fact]
    public async Task IdleHoldersLoseTheirCacheAfterTheIdleTimeoutAndTheFirstWaiterGetsIt()
    {
        var time = new ManualTimeProvider();
        await using var h = await ServerHarness.StartAsync(o =>
        {
            o.CacheTokens = 100;
            o.MaxSessionLength = 50;
            o.MaxCacheShare = 0.5;
            o.SessionIdleTimeout = TimeSpan.FromSeconds(60);
            o.CacheWaitTimeout = TimeSpan.FromSeconds(80);
            o.TimeProvider = time;
        });
        await using var greedy = await h.ConnectAsync();
        await using var active = await h.ConnectAsync();
        await using var late = await h.ConnectAsync();
        await using var later = await h.ConnectAsync();
        var g = await BlockServerTests.Session.OpenAsync(greedy, h, maxLength: 50);
        await g.StepAsync(1, 0, h.Input(1, 1, seed: 1), 1, 1);
        var a = await BlockServerTests.Session.OpenAsync(active, h, maxLength: 50);
        await a.StepAsync(1, 0, h.Input(1, 1, seed: 1), 1, 1);

        // The cache is full; two clients queue in arrival order.
        var first = await BlockServerTests.Session.OpenAsync(late, h, maxLength: 50);
        await first.SendStepAsync(1, 0, h.Input(1, 1, seed: 2), 1, 1);
        await ServerHarness.WaitUntil(() => h.Server.Budget.Waiting == 1, "the first late session waits");
        var second = await BlockServerTests.Session.OpenAsync(later, h, maxLength: 50);
        await second.SendStepAsync(1, 0, h.Input(1, 1, seed: 2), 1, 1);
        await ServerHarness.WaitUntil(() => h.Server.Budget.Waiting == 2, "the second late session waits");

        // The active holder keeps stepping within the idle timeout; the greedy one stops.
        time.Advance(TimeSpan.FromSeconds(40));
        Assert.Equal(2, (await a.StepAsync(2, 1, h.Input(1, 1, seed: 3), 1, 1)).Position);
        time.Advance(TimeSpan.FromSeconds(25));
        BlockServerTests.AssertError(await greedy.NextAsync(g.StreamId), "session_timeout", "received nothing for 60 s");
        Assert.Equal(1, (await late.NextAsync(first.StreamId)).Message is InferenceStepResult r ? r.Position : -1);
        Assert.Equal(1, h.Server.Budget.Waiting);
        Assert.Equal(0, h.Server.CacheTokensLeft);

        // The second waiter times out at 80 s (retryable elsewhere), counted; the two holders are within their idle timeout.
        time.Advance(TimeSpan.FromSeconds(15));
        BlockServerTests.AssertError(await later.NextAsync(second.StreamId), "cache_exhausted", "the session needs 50 tokens, 0 of 100 are free");
        Assert.Equal(1, h.Server.GetStatistics().CacheRefusedTimedOut);
    }
}
