using Petals.Testing.Time;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Storage;

/// <summary>Per-signer quotas, the established-signer rule and the eviction order a flood of cheap identities meets.</summary>
public sealed class RecordStorageQuotaTests
{
    private static readonly Lazy<PeerIdentity[]> Cheap = new(() => Enumerable.Range(0, 40).Select(_ => PeerIdentity.Generate()).ToArray());

    private static (RecordStorage Storage, ManualTimeProvider Clock) Create(RecordStorageOptions options)
    {
        var clock = new ManualTimeProvider(Start);
        return (new RecordStorage(options, new RecordValidator(null, clock), clock), clock);
    }

    private static DhtRecord Record(PeerIdentity signer, string key, ManualTimeProvider clock, TimeSpan ttl) => Signed(signer, key, [1], clock.GetUtcNow() + ttl);

    // Stores `keys` records of `signer` and refreshes them every minute for `rounds` rounds (a live announcing server).
    private static void Announce(RecordStorage storage, ManualTimeProvider clock, PeerIdentity signer, int keys, int rounds)
    {
        for (var round = 0; round <= rounds; round++)
        {
            if (round > 0)
            {
                clock.Advance(TimeSpan.FromMinutes(1));
            }

            for (var k = 0; k < keys; k++)
            {
                Assert.True(storage.Store(Record(signer, $"model.{k}", clock, TimeSpan.FromMinutes(3))).IsAccepted);
            }
        }
    }

    [Fact]
    public void A_signer_over_its_record_or_byte_quota_is_refused_but_may_replace_its_own_records()
    {
        var (storage, clock) = Create(new RecordStorageOptions { MaxRecordsPerSigner = 2 });
        Assert.True(storage.Store(Record(Identities[0], "a", clock, TimeSpan.FromMinutes(5))).IsAccepted);
        Assert.True(storage.Store(Record(Identities[0], "b", clock, TimeSpan.FromMinutes(5))).IsAccepted);
        var refused = storage.Store(Record(Identities[0], "c", clock, TimeSpan.FromMinutes(5)));
        Assert.Equal(RecordRejectionReason.SignerQuotaExceeded, refused.Reason);
        Assert.Contains("maximum of 2", refused.Message, StringComparison.Ordinal);
        Assert.True(storage.Store(Record(Identities[0], "a", clock, TimeSpan.FromMinutes(6))).IsAccepted);
        Assert.True(storage.Store(Record(Identities[1], "c", clock, TimeSpan.FromMinutes(5))).IsAccepted);

        var size = Record(Identities[0], "x", clock, TimeSpan.FromMinutes(1)).StorageSize;
        var (bytes, clock2) = Create(new RecordStorageOptions { MaxBytesPerSigner = (2 * size) + 1 });
        Assert.True(bytes.Store(Record(Identities[0], "x", clock2, TimeSpan.FromMinutes(5))).IsAccepted);
        Assert.True(bytes.Store(Record(Identities[0], "y", clock2, TimeSpan.FromMinutes(5))).IsAccepted);
        Assert.Contains("bytes", bytes.Store(Record(Identities[0], "z", clock2, TimeSpan.FromMinutes(5))).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => new RecordStorage(new RecordStorageOptions { MaxRecordsPerSigner = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RecordStorage(new RecordStorageOptions { MinRefreshSpacing = TimeSpan.FromSeconds(-1) }));
    }

    [Fact]
    public void A_signer_is_established_after_two_refresh_rounds_at_least_the_spacing_apart_and_forgotten_when_it_holds_nothing()
    {
        var (storage, clock) = Create(RecordStorageOptions.Default);
        var signer = Identities[0].NodeId;
        Assert.True(storage.Store(Record(Identities[0], "k", clock, TimeSpan.FromMinutes(3))).IsAccepted);
        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.True(storage.Store(Record(Identities[0], "k", clock, TimeSpan.FromMinutes(3))).IsAccepted);
        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.True(storage.Store(Record(Identities[0], "k", clock, TimeSpan.FromMinutes(3))).IsAccepted);
        Assert.False(storage.IsEstablished(signer)); // refreshes within 30 s of the first do not count
        clock.Advance(TimeSpan.FromSeconds(30));
        Assert.True(storage.Store(Record(Identities[0], "k", clock, TimeSpan.FromMinutes(3))).IsAccepted);
        Assert.False(storage.IsEstablished(signer)); // one round
        clock.Advance(TimeSpan.FromSeconds(30));
        Assert.True(storage.Store(Record(Identities[0], "k", clock, TimeSpan.FromMinutes(3))).IsAccepted);
        Assert.True(storage.IsEstablished(signer));

        // Silent past its expiry: the records go and so does the standing.
        clock.Advance(TimeSpan.FromMinutes(4));
        Assert.Equal(1, storage.Sweep());
        Assert.Equal(0, storage.SignerCount);
        Assert.True(storage.Store(Record(Identities[0], "k", clock, TimeSpan.FromMinutes(3))).IsAccepted);
        Assert.False(storage.IsEstablished(signer));
    }

    [Fact]
    public void A_flood_of_cheap_identities_cannot_evict_a_live_servers_announcement()
    {
        var size = Record(Identities[0], "model.0", new ManualTimeProvider(Start), TimeSpan.FromMinutes(3)).StorageSize;
        var (storage, clock) = Create(new RecordStorageOptions { MaxBytes = 30 * size });
        Announce(storage, clock, Identities[0], keys: 4, rounds: 2);
        Assert.True(storage.IsEstablished(Identities[0].NodeId));

        // The flood: 4 throwaway identities store 100 records each, expiring much later than the server's. The
        // storage fills and the flood evicts itself (largest holders first) or is refused; the server's records stay.
        var (accepted, full) = Flood(storage, clock, Cheap.Value.Take(4), 100);
        Assert.Equal(400, accepted + full);
        Assert.True(full > 0 && accepted >= 26, $"accepted {accepted}, refused {full}");
        AssertServerHolds(storage);

        // A fresh server with one record still gets in, by evicting from the flooder holding the most.
        var fresh = storage.Store(Record(Identities[1], "model.0", clock, TimeSpan.FromMinutes(3)));
        Assert.True(fresh.IsAccepted, fresh.ToString());

        // Then 36 more identities with 20 records each: the live server keeps announcing through it all.
        (accepted, full) = Flood(storage, clock, Cheap.Value.Skip(4), 20);
        Assert.Equal(36 * 20, accepted + full);
        clock.Advance(TimeSpan.FromMinutes(1));
        Announce(storage, clock, Identities[0], keys: 4, rounds: 0);
        AssertServerHolds(storage);
        Assert.True(storage.ByteCount <= 30 * size);
    }

    private static (int Accepted, int Full) Flood(RecordStorage storage, ManualTimeProvider clock, IEnumerable<PeerIdentity> identities, int records)
    {
        int accepted = 0, full = 0;
        foreach (var cheap in identities)
        {
            for (var i = 0; i < records; i++)
            {
                var verdict = storage.Store(Record(cheap, $"flood.{i}", clock, TimeSpan.FromHours(1)));
                accepted += verdict.IsAccepted ? 1 : 0;
                full += verdict.Reason == RecordRejectionReason.StorageFull ? 1 : 0;
            }
        }

        return (accepted, full);
    }

    private static void AssertServerHolds(RecordStorage storage)
    {
        for (var k = 0; k < 4; k++)
        {
            Assert.NotNull(storage.Get($"model.{k}", Identities[0].NodeId));
        }
    }

    [Fact]
    public void Eviction_goes_to_the_signer_holding_the_most_and_an_established_signer_evicts_newcomers_first()
    {
        // Every key is 5 characters, so every record has the same size.
        var size = Record(Identities[0], "abcde", new ManualTimeProvider(Start), TimeSpan.FromMinutes(3)).StorageSize;
        var (storage, clock) = Create(new RecordStorageOptions { MaxBytes = 6 * size });
        var hog = Cheap.Value[0];
        for (var i = 0; i < 5; i++)
        {
            Assert.True(storage.Store(Record(hog, $"hog.{i}", clock, TimeSpan.FromHours(2))).IsAccepted);
        }

        Assert.True(storage.Store(Record(Cheap.Value[1], "small", clock, TimeSpan.FromHours(2))).IsAccepted);

        // Full. A newcomer whose record expires sooner than everything still evicts from the hog (5 > 0 + 1), not "small".
        Assert.True(storage.Store(Record(Cheap.Value[2], "new.0", clock, TimeSpan.FromMinutes(1))).IsAccepted);
        Assert.Equal(4, storage.GetAll().Count(r => r.SubKey == hog.NodeId));
        Assert.NotNull(storage.Get("small", Cheap.Value[1].NodeId));

        // Holders of one record each, expiring later than the newcomer's: nothing may go.
        var (even, clock2) = Create(new RecordStorageOptions { MaxBytes = 2 * size });
        Assert.True(even.Store(Record(Cheap.Value[4], "even0", clock2, TimeSpan.FromHours(2))).IsAccepted);
        Assert.True(even.Store(Record(Cheap.Value[5], "even1", clock2, TimeSpan.FromHours(2))).IsAccepted);
        Assert.Equal(RecordRejectionReason.StorageFull, even.Store(Record(Cheap.Value[3], "late0", clock2, TimeSpan.FromMinutes(30))).Reason);
    }
}
