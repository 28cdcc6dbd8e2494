using FsCheck;
using FsCheck.Fluent;
using Petals.Testing.Time;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Storage;

public sealed class RecordStorageTests
{
    private static (RecordStorage Storage, ManualTimeProvider Clock) Create(RecordStorageOptions? options = null)
    {
        var clock = new ManualTimeProvider(Start);
        return (new RecordStorage(options, new RecordValidator(null, clock), clock), clock);
    }

    private static DhtRecord At(int signer, string key, int minutes, byte value = 1) =>
        Signed(Identities[signer], key, [value], Start.AddMinutes(minutes));

    [Fact]
    public void One_key_holds_one_sub_record_per_peer()
    {
        var (storage, _) = Create();
        Assert.True(storage.Store(At(0, "llama.0", 10)).IsAccepted);
        Assert.True(storage.Store(At(1, "llama.0", 10)).IsAccepted);
        Assert.True(storage.Store(At(1, "llama.1", 10)).IsAccepted);

        var records = storage.Get("llama.0");
        Assert.Equal(2, records.Count);
        Assert.Equal(new[] { Identities[0].NodeId, Identities[1].NodeId }.Order(), records.Select(r => r.SubKey));
        Assert.Equal(2, storage.KeyCount);
        Assert.Equal(3, storage.RecordCount);
        Assert.Empty(storage.Get("llama.2"));
        Assert.NotNull(storage.Get("llama.1", Identities[1].NodeId));
        Assert.Null(storage.Get("llama.1", Identities[0].NodeId));
    }

    [Fact]
    public void Newer_versions_replace_and_replayed_older_ones_are_refused()
    {
        var (storage, _) = Create();
        var first = At(0, "llama.0", 10, value: 1);
        var newer = At(0, "llama.0", 20, value: 2);
        Assert.True(storage.Store(first).IsAccepted);
        Assert.True(storage.Store(newer).IsAccepted);
        Assert.Equal(1, storage.RecordCount);
        Assert.Equal(2, storage.Get("llama.0", Identities[0].NodeId)!.Value.Span[0]);

        var replay = storage.Store(first);
        Assert.Equal(RecordRejectionReason.Replayed, replay.Reason);
        Assert.True(storage.Store(newer).IsAccepted, "Re-delivering the stored record is harmless.");
        Assert.Equal(newer.StorageSize, storage.ByteCount);
    }

    [Fact]
    public void Invalid_records_never_enter_storage()
    {
        var (storage, _) = Create();
        var valid = At(0, "llama.0", 10);
        var forged = new DhtRecord(valid.Key, valid.SubKey, new byte[] { 9 }, valid.ExpiresAt, valid.PublicKey, valid.Signature);
        Assert.Equal(RecordRejectionReason.ForgedSignature, storage.Store(forged).Reason);
        Assert.Equal(RecordRejectionReason.Expired, storage.Store(At(0, "llama.0", -1)).Reason);
        Assert.Equal(RecordRejectionReason.ExpirationTooFar, storage.Store(At(0, "llama.0", 60 * 24)).Reason);
        Assert.Equal(0, storage.RecordCount);
        Assert.Equal(0, storage.ByteCount);
    }

    [Fact]
    public void Expired_records_drop_lazily_and_by_sweep()
    {
        var (storage, clock) = Create();
        storage.Store(At(0, "a", 1));
        storage.Store(At(1, "a", 3));
        storage.Store(At(2, "b", 2));
        clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Single(storage.Get("a"));
        Assert.Equal(2, storage.RecordCount);

        clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1, storage.Sweep());
        Assert.Equal(1, storage.KeyCount);
        clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Empty(storage.GetAll());
        Assert.Equal(0, storage.ByteCount);
    }

    [Fact]
    public void A_sweep_drops_exactly_the_records_expired_on_the_time_provider()
    {
        var (storage, clock) = Create();
        storage.Store(At(0, "a", 1));
        storage.Store(At(1, "b", 5));
        clock.Advance(TimeSpan.FromSeconds(90));
        Assert.Equal(1, storage.Sweep());
        Assert.Equal(1, storage.RecordCount);
        clock.Advance(TimeSpan.FromMinutes(4));
        Assert.Equal(1, storage.Sweep());
        Assert.Equal(0, storage.RecordCount);
    }

    [Fact]
    public void A_full_key_evicts_its_soonest_to_expire_sub_record()
    {
        var (storage, _) = Create(new RecordStorageOptions { MaxRecordsPerKey = 2 });
        Assert.True(storage.Store(At(0, "k", 10)).IsAccepted);
        Assert.True(storage.Store(At(1, "k", 20)).IsAccepted);
        Assert.True(storage.Store(At(2, "k", 15)).IsAccepted);
        Assert.Equal(new[] { Identities[1].NodeId, Identities[2].NodeId }.Order(), storage.Get("k").Select(r => r.SubKey));

        var refused = storage.Store(At(3, "k", 12));
        Assert.Equal(RecordRejectionReason.StorageFull, refused.Reason);
        Assert.Contains("maximum of 2 sub-records", refused.Message, StringComparison.Ordinal);

        // Refreshing a sub-record already held does not need room.
        Assert.True(storage.Store(At(2, "k", 16)).IsAccepted);
    }

    [Fact]
    public void Key_and_byte_bounds_evict_soonest_first_within_a_signer_and_from_the_largest_holder_across_signers()
    {
        var (storage, _) = Create(new RecordStorageOptions { MaxKeys = 2 });
        storage.Store(At(0, "a", 10));
        storage.Store(At(0, "b", 30));
        Assert.True(storage.Store(At(0, "c", 20)).IsAccepted);
        Assert.Empty(storage.Get("a"));
        Assert.Equal(RecordRejectionReason.StorageFull, storage.Store(At(0, "d", 15)).Reason);

        var size = At(0, "x", 1).StorageSize;
        var (bytes, _) = Create(new RecordStorageOptions { MaxBytes = 3 * size });
        bytes.Store(At(0, "x", 5));
        bytes.Store(At(0, "y", 7));
        bytes.Store(At(1, "x", 6));
        Assert.True(bytes.Store(At(3, "x", 8)).IsAccepted);
        Assert.Null(bytes.Get("x", Identities[0].NodeId));
        Assert.NotNull(bytes.Get("y", Identities[0].NodeId));
        Assert.Equal(3 * size, bytes.ByteCount);
        Assert.Equal(RecordRejectionReason.StorageFull, bytes.Store(At(4, "x", 2)).Reason);

        var (tiny, _) = Create(new RecordStorageOptions { MaxBytes = size - 1 });
        Assert.Contains("more than the whole storage", tiny.Store(At(0, "x", 5)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Random_workloads_respect_every_bound_and_evict_only_what_the_policy_allows()
    {
        var options = new RecordStorageOptions { MaxKeys = 4, MaxRecordsPerKey = 3, MaxBytes = 9 * At(0, "k0", 1).StorageSize };
        int evictions = 0, refusals = 0, replays = 0;
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var (storage, clock) = Create(options);
            for (var step = 0; step < 40; step++)
            {
                if (random.Next(8) == 0)
                {
                    clock.Advance(TimeSpan.FromMinutes(random.Next(1, 5)));
                }

                var record = Signed(Identities[random.Next(Identities.Length)], "k" + random.Next(6), [(byte)random.Next(256)], clock.GetUtcNow().AddMinutes(random.Next(1, 30)));
                var before = storage.GetAll();
                var existing = before.FirstOrDefault(r => r.Key == record.Key && r.SubKey == record.SubKey);
                var held = before.GroupBy(r => r.SubKey).ToDictionary(g => g.Key, g => g.Count());
                var incomingHeld = held.GetValueOrDefault(record.SubKey) - (existing is null ? 0 : 1);
                var established = Identities.ToDictionary(i => i.NodeId, i => storage.IsEstablished(i.NodeId));
                var verdict = storage.Store(record);
                var after = storage.GetAll();

                Assert.True(after.Select(r => r.Key).Distinct().Count() <= options.MaxKeys);
                Assert.All(after.GroupBy(r => r.Key), g => Assert.True(g.Count() <= options.MaxRecordsPerKey));
                Assert.Equal(after.Sum(r => r.StorageSize), storage.ByteCount);
                Assert.True(storage.ByteCount <= options.MaxBytes);
                Assert.All(after, r => Assert.True(r.ExpiresAt > clock.GetUtcNow()));

                if (verdict.IsAccepted)
                {
                    Assert.True(record.ContentEquals(storage.Get(record.Key, record.SubKey)));

                    // Every record that disappeared (other than the replaced version and expired ones) is the new one's
                    // signer's or key's and expired sooner, or its signer held at least as many as the new one's will, or
                    // was not established while the new one's was; a signer that is not established never evicts an
                    // established one.
                    foreach (var gone in before.Where(b => !after.Contains(b) && b != existing))
                    {
                        var ownerEstablished = established[gone.SubKey];
                        var incomingEstablished = established[record.SubKey];
                        Assert.False(ownerEstablished && !incomingEstablished && gone.SubKey != record.SubKey, $"{gone} (established) was evicted for {record}.");
                        var sameSignerOrKey = gone.SubKey == record.SubKey || gone.Key == record.Key;
                        Assert.True(
                            (sameSignerOrKey && gone.ExpiresAt < record.ExpiresAt) || (gone.SubKey != record.SubKey && (incomingEstablished != ownerEstablished || held[gone.SubKey] >= incomingHeld + 1)),
                            $"{gone} was evicted for {record}.");
                        evictions++;
                    }
                }
                else if (verdict.Reason == RecordRejectionReason.StorageFull)
                {
                    Assert.Equal(before.Where(b => b.ExpiresAt > clock.GetUtcNow()).Count(), after.Count);
                    refusals++;
                }
                else
                {
                    Assert.Equal(RecordRejectionReason.Replayed, verdict.Reason);
                    Assert.NotNull(existing);
                    Assert.True(existing.ExpiresAt >= record.ExpiresAt);
                    replays++;
                }
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(40));

        // The workload is tight enough to exercise every path: evictions, refusals for lack of room, and replays.
        Assert.True(evictions > 0 && refusals > 0 && replays > 0, $"evictions {evictions}, refusals {refusals}, replays {replays}");
    }

    [Fact]
    public void Options_are_validated()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new RecordStorage(new RecordStorageOptions { MaxKeys = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RecordStorage(new RecordStorageOptions { MaxBytes = -1 }));
    }
}
