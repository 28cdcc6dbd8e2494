using FsCheck;
using FsCheck.Fluent;
using Petals.Testing.Time;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Routing;

public sealed class RoutingTableTests
{
    [Fact]
    public void Find_closest_matches_brute_force()
    {
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var self = RandomId(random);
            var table = new RoutingTable(self, bucketSize: random.Next(1, 21));
            var known = new List<NodeId>();
            for (var i = random.Next(0, 400); i > 0; i--)
            {
                // Half the ids share a long prefix with self, so the near buckets fill as well as the far ones.
                var id = random.Next(2) == 0 ? RandomId(random) : NodeId.CreateRandomInBucket(self, random.Next(0, 40), random);
                if (table.Update(Contact(id)).Kind == RoutingUpdateKind.Added)
                {
                    known.Add(id);
                }
            }

            Assert.Equal(known.Count, table.Count);
            Assert.Equal(known.Order(), table.GetAll().Select(c => c.Id).Order());

            var target = random.Next(3) == 0 && known.Count > 0 ? known[random.Next(known.Count)] : RandomId(random);
            var count = random.Next(0, 30);
            var expected = known.OrderBy(id => ToBigInteger(id ^ target)).Take(count).ToArray();
            Assert.Equal(expected, table.FindClosest(target, count).Select(c => c.Id));

            if (known.Count > 0)
            {
                var excluded = known[random.Next(known.Count)];
                var withoutIt = known.Where(id => id != excluded).OrderBy(id => ToBigInteger(id ^ target)).Take(count);
                Assert.Equal(withoutIt, table.FindClosest(target, count, excluded).Select(c => c.Id));
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(200));
    }

    [Fact]
    public void Buckets_hold_contacts_by_distance_and_never_self()
    {
        var random = new Random(5);
        var self = RandomId(random);
        var table = new RoutingTable(self);
        Assert.Equal(RoutingUpdateKind.IgnoredSelf, table.Update(Contact(self)).Kind);
        for (var i = 0; i < 300; i++)
        {
            table.Update(Contact(RandomId(random)));
        }

        for (var b = 0; b < NodeId.BitLength; b++)
        {
            var bucket = table.GetBucket(b);
            Assert.True(bucket.Count <= RoutingTable.DefaultBucketSize);
            Assert.All(bucket, c => Assert.Equal(b, self.BucketIndexOf(c.Id)));
        }

        // Half of all random ids fall in bucket 159, so it is full and the rest wait as replacements.
        Assert.Equal(RoutingTable.DefaultBucketSize, table.GetBucket(159).Count);
        Assert.Equal(RoutingTable.DefaultBucketSize, table.GetReplacements(159).Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => table.GetBucket(160));
    }

    [Fact]
    public void A_full_bucket_keeps_live_contacts_and_replaces_failed_ones()
    {
        var clock = new ManualTimeProvider(Start);
        var random = new Random(9);
        var self = RandomId(random);
        var table = new RoutingTable(self, bucketSize: 3, replacementCacheSize: 2, timeProvider: clock);
        var members = Enumerable.Range(0, 3).Select(_ => NodeId.CreateRandomInBucket(self, 100, random)).ToArray();
        foreach (var id in members)
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(RoutingUpdateKind.Added, table.Update(Contact(id)).Kind);
        }

        // Seeing a member again makes it the most recently seen.
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(RoutingUpdateKind.Refreshed, table.Update(Contact(members[0])).Kind);
        Assert.Equal(new[] { members[1], members[2], members[0] }, table.GetBucket(100).Select(c => c.Id));
        Assert.True(table.TryGetLastSeen(members[0], out var seen));
        Assert.Equal(clock.GetUtcNow(), seen);

        // A newcomer to the full bucket waits; the least recently seen is named for a ping.
        var newcomers = Enumerable.Range(0, 3).Select(_ => NodeId.CreateRandomInBucket(self, 100, random)).ToArray();
        var update = table.Update(Contact(newcomers[0]));
        Assert.Equal(RoutingUpdateKind.Pending, update.Kind);
        Assert.Equal(members[1], update.PingCandidate!.Id);
        Assert.Null(table.Find(newcomers[0]));

        // It answered: it stays and becomes the most recently seen; the newcomer still waits.
        Assert.Equal(RoutingUpdateKind.Refreshed, table.Update(update.PingCandidate).Kind);
        Assert.Equal(members[2], table.Update(Contact(newcomers[1])).PingCandidate!.Id);
        Assert.Equal(members[2], table.Update(Contact(newcomers[2])).PingCandidate!.Id);

        // The replacement cache keeps the two most recently seen newcomers.
        Assert.Equal(new[] { newcomers[1], newcomers[2] }, table.GetReplacements(100).Select(c => c.Id));

        // It failed: the most recently seen replacement takes its place.
        Assert.True(table.MarkFailed(members[2]));
        Assert.Null(table.Find(members[2]));
        Assert.NotNull(table.Find(newcomers[2]));
        Assert.Equal(3, table.Count);
        Assert.Equal(new[] { newcomers[1] }, table.GetReplacements(100).Select(c => c.Id));

        // Failing a waiting replacement drops it; an unknown id is reported as absent.
        Assert.True(table.MarkFailed(newcomers[1]));
        Assert.Empty(table.GetReplacements(100));
        Assert.False(table.MarkFailed(newcomers[1]));
        Assert.True(table.MarkFailed(members[0]));
        Assert.Equal(2, table.Count);
        Assert.Equal(RoutingUpdateKind.Added, table.Update(Contact(newcomers[0])).Kind);
    }

    [Fact]
    public void A_contact_seen_at_a_new_address_is_updated()
    {
        var self = NodeId.CreateRandom(new Random(1));
        var id = NodeId.CreateRandom(new Random(2));
        var table = new RoutingTable(self);
        table.Update(new DhtContact(id, Petals.Transport.PeerAddress.Parse("tcp://127.0.0.1:1000")));
        table.Update(new DhtContact(id, Petals.Transport.PeerAddress.Parse("tcp://127.0.0.1:2000")));
        Assert.Equal("127.0.0.1:2000", table.Find(id)!.Address.Location);
        Assert.Equal(1, table.Count);
        Assert.Throws<ArgumentException>(() => table.Update(new DhtContact(id, default)));
    }

    [Fact]
    public void Refresh_bookkeeping_lists_idle_buckets_in_the_populated_range()
    {
        var clock = new ManualTimeProvider(Start);
        var random = new Random(3);
        var self = RandomId(random);
        var table = new RoutingTable(self, timeProvider: clock);
        var hour = TimeSpan.FromHours(1);
        Assert.Empty(table.GetBucketsToRefresh(hour));

        table.Update(Contact(NodeId.CreateRandomInBucket(self, 150, random)));
        clock.Advance(hour);
        Assert.Equal(Enumerable.Range(150, 10), table.GetBucketsToRefresh(hour));

        // A lookup into bucket 155 and traffic from a node in bucket 159 refresh them.
        table.MarkRefreshed(NodeId.CreateRandomInBucket(self, 155, random));
        table.Update(Contact(NodeId.CreateRandomInBucket(self, 159, random)));
        Assert.Equal(clock.GetUtcNow(), table.GetLastRefreshed(155));
        Assert.Equal(new[] { 150, 151, 152, 153, 154, 156, 157, 158 }, table.GetBucketsToRefresh(hour));

        clock.Advance(TimeSpan.FromMinutes(59));
        Assert.DoesNotContain(155, table.GetBucketsToRefresh(hour));
        clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Contains(155, table.GetBucketsToRefresh(hour));
        Assert.Throws<ArgumentOutOfRangeException>(() => table.GetBucketsToRefresh(TimeSpan.Zero));
    }

    [Fact]
    public void Concurrent_updates_and_lookups_stay_consistent()
    {
        var self = NodeId.CreateRandom(new Random(11));
        var table = new RoutingTable(self);
        Parallel.For(0, 4, worker =>
        {
            var random = new Random(worker);
            for (var i = 0; i < 2_000; i++)
            {
                var id = RandomId(random);
                switch (random.Next(3))
                {
                    case 0:
                        table.Update(Contact(id));
                        break;
                    case 1:
                        var closest = table.FindClosest(id, 20);
                        Assert.True(closest.Count <= 20);
                        break;
                    default:
                        var all = table.GetAll();
                        if (all.Count > 0)
                        {
                            table.MarkFailed(all[random.Next(all.Count)].Id);
                        }

                        break;
                }
            }
        });

        Assert.Equal(table.GetAll().Count, table.Count);
        Assert.Equal(table.Count, table.GetAll().Select(c => c.Id).Distinct().Count());
    }
}
