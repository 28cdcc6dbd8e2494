namespace Petals.Discovery;

/// <summary>
/// A Kademlia routing table: 160 k-buckets, bucket <c>i</c> holding up to <see cref="BucketSize"/> contacts whose
/// distance from <see cref="Self"/> lies in [2^i, 2^(i+1)), ordered least recently seen first, each with a
/// replacement cache of the most recently seen contacts that did not fit. A full bucket never drops a live contact
/// for a newcomer (old nodes that stay up are the likeliest to stay up): <see cref="Update"/> reports the least
/// recently seen contact to ping, and only <see cref="MarkFailed"/> evicts it in favour of a replacement.
/// </summary>
/// <remarks>
/// Thread-safe: every operation takes one lock and does no I/O, so the networking layer calls it from any RPC
/// handler and does the pinging itself. Times come from the injected <see cref="TimeProvider"/>. A bucket counts as
/// refreshed when a lookup targets its range (<see cref="MarkRefreshed"/>) or when a contact is added to it or
/// refreshed in it; <see cref="GetBucketsToRefresh"/> lists those idle for longer than an interval.
/// </remarks>
public sealed class RoutingTable
{
    /// <summary>The standard Kademlia bucket size k (20).</summary>
    public const int DefaultBucketSize = 20;

    private readonly Lock _gate = new();
    private readonly Bucket[] _buckets = new Bucket[NodeId.BitLength];
    private readonly TimeProvider _time;
    private int _count;

    /// <summary>Creates an empty table.</summary>
    /// <param name="self">The local node's id.</param>
    /// <param name="bucketSize">k, the most contacts per bucket; default 20.</param>
    /// <param name="replacementCacheSize">The most contacts waiting per bucket; default 20.</param>
    /// <param name="timeProvider">The clock; <see cref="TimeProvider.System"/> when null.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is less than 1 (the replacement cache may be 0).</exception>
    public RoutingTable(NodeId self, int bucketSize = DefaultBucketSize, int replacementCacheSize = DefaultBucketSize, TimeProvider? timeProvider = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(replacementCacheSize);
        Self = self;
        BucketSize = bucketSize;
        ReplacementCacheSize = replacementCacheSize;
        _time = timeProvider ?? TimeProvider.System;
        var now = _time.GetUtcNow();
        for (var i = 0; i < _buckets.Length; i++)
        {
            _buckets[i] = new Bucket(now);
        }
    }

    /// <summary>The local node's id.</summary>
    public NodeId Self { get; }

    /// <summary>k, the most contacts per bucket.</summary>
    public int BucketSize { get; }

    /// <summary>The most contacts waiting in each bucket's replacement cache.</summary>
    public int ReplacementCacheSize { get; }

    /// <summary>The number of contacts in the buckets (replacement caches not included).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _count;
            }
        }
    }

    /// <summary>
    /// Records that <paramref name="contact"/> was just heard from (it sent a request or answered one): refreshes it,
    /// adds it when its bucket has room, or parks it in the replacement cache and names the contact to ping.
    /// </summary>
    /// <param name="contact">The contact.</param>
    /// <returns>What happened; see <see cref="RoutingUpdateKind"/>.</returns>
    /// <exception cref="ArgumentException">The contact has no address.</exception>
    public RoutingUpdate Update(DhtContact contact)
    {
        ArgumentNullException.ThrowIfNull(contact);
        if (contact.Address.IsEmpty)
        {
            throw new ArgumentException($"Contact {contact.Id} has no address.", nameof(contact));
        }

        var index = Self.BucketIndexOf(contact.Id);
        if (index < 0)
        {
            return new RoutingUpdate(RoutingUpdateKind.IgnoredSelf, null);
        }

        var now = _time.GetUtcNow();
        lock (_gate)
        {
            var bucket = _buckets[index];
            bucket.LastRefreshed = now;
            var position = bucket.IndexOf(contact.Id);
            if (position >= 0)
            {
                bucket.Contacts.RemoveAt(position);
                bucket.Contacts.Add(new Entry(contact, now));
                return new RoutingUpdate(RoutingUpdateKind.Refreshed, null);
            }

            if (bucket.Contacts.Count < BucketSize)
            {
                bucket.RemoveReplacement(contact.Id);
                bucket.Contacts.Add(new Entry(contact, now));
                _count++;
                return new RoutingUpdate(RoutingUpdateKind.Added, null);
            }

            if (ReplacementCacheSize > 0)
            {
                bucket.RemoveReplacement(contact.Id);
                if (bucket.Replacements.Count >= ReplacementCacheSize)
                {
                    bucket.Replacements.RemoveAt(0);
                }

                bucket.Replacements.Add(new Entry(contact, now));
            }

            return new RoutingUpdate(RoutingUpdateKind.Pending, bucket.Contacts[0].Contact);
        }
    }

    /// <summary>
    /// Records that <paramref name="id"/> failed to answer: removes it (from its bucket or replacement cache) and
    /// promotes the most recently seen replacement into the freed place.
    /// </summary>
    /// <param name="id">The unresponsive node.</param>
    /// <returns>Whether the node was in the table.</returns>
    public bool MarkFailed(NodeId id)
    {
        lock (_gate)
        {
            var position = Locate(id, out var bucket);
            if (bucket is null)
            {
                return false;
            }

            if (position < 0)
            {
                return bucket.RemoveReplacement(id);
            }

            bucket.Contacts.RemoveAt(position);
            _count--;
            if (bucket.Replacements.Count > 0)
            {
                var promoted = bucket.Replacements[^1];
                bucket.Replacements.RemoveAt(bucket.Replacements.Count - 1);

                // Keep the bucket ordered by last contact: the replacement was seen at promoted.LastSeen.
                var at = bucket.Contacts.FindIndex(e => e.LastSeen > promoted.LastSeen);
                bucket.Contacts.Insert(at < 0 ? bucket.Contacts.Count : at, promoted);
                _count++;
            }

            return true;
        }
    }

    /// <summary>The contact with id <paramref name="id"/> in a bucket, or null.</summary>
    /// <param name="id">The node id.</param>
    public DhtContact? Find(NodeId id) => TryGetEntry(id, out var entry) ? entry.Contact : null;

    /// <summary>When the contact <paramref name="id"/> (in a bucket) was last heard from.</summary>
    /// <param name="id">The node id.</param>
    /// <param name="lastSeen">The time, when found.</param>
    /// <returns>Whether the contact is in a bucket.</returns>
    public bool TryGetLastSeen(NodeId id, out DateTimeOffset lastSeen)
    {
        var found = TryGetEntry(id, out var entry);
        lastSeen = entry.LastSeen;
        return found;
    }

    /// <summary>
    /// The (at most) <paramref name="count"/> contacts closest to <paramref name="target"/> by XOR distance, closest
    /// first; what a node answers to FIND_NODE and where an iterative lookup starts.
    /// </summary>
    /// <param name="target">The id to get close to.</param>
    /// <param name="count">The most contacts returned; not negative.</param>
    /// <param name="exclude">A node left out of the answer (typically the requester), or null.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    public IReadOnlyList<DhtContact> FindClosest(NodeId target, int count, NodeId? exclude = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0)
        {
            return [];
        }

        // A bounded max-heap by distance: the farthest kept contact is on top and is replaced by anything closer.
        var heap = new PriorityQueue<DhtContact, NodeId>(count + 1, FarthestFirst.Instance);
        lock (_gate)
        {
            foreach (var bucket in _buckets)
            {
                foreach (var entry in bucket.Contacts)
                {
                    if (exclude is { } excluded && entry.Contact.Id == excluded)
                    {
                        continue;
                    }

                    var distance = entry.Contact.Id ^ target;
                    if (heap.Count < count)
                    {
                        heap.Enqueue(entry.Contact, distance);
                    }
                    else if (heap.TryPeek(out _, out var farthest) && distance < farthest)
                    {
                        heap.EnqueueDequeue(entry.Contact, distance);
                    }
                }
            }
        }

        var result = new DhtContact[heap.Count];
        for (var i = result.Length - 1; i >= 0; i--)
        {
            result[i] = heap.Dequeue();
        }

        return result;
    }

    /// <summary>Every contact in the buckets, nearest bucket first and least recently seen first within a bucket.</summary>
    public IReadOnlyList<DhtContact> GetAll()
    {
        lock (_gate)
        {
            var result = new List<DhtContact>(_count);
            foreach (var bucket in _buckets)
            {
                foreach (var entry in bucket.Contacts)
                {
                    result.Add(entry.Contact);
                }
            }

            return result;
        }
    }

    /// <summary>The contacts of bucket <paramref name="index"/>, least recently seen first.</summary>
    /// <param name="index">The bucket, 0 to 159.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is outside 0..159.</exception>
    public IReadOnlyList<DhtContact> GetBucket(int index)
    {
        CheckIndex(index);
        lock (_gate)
        {
            return _buckets[index].Contacts.ConvertAll(e => e.Contact);
        }
    }

    /// <summary>The replacement cache of bucket <paramref name="index"/>, least recently seen first.</summary>
    /// <param name="index">The bucket, 0 to 159.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is outside 0..159.</exception>
    public IReadOnlyList<DhtContact> GetReplacements(int index)
    {
        CheckIndex(index);
        lock (_gate)
        {
            return _buckets[index].Replacements.ConvertAll(e => e.Contact);
        }
    }

    /// <summary>Records that a lookup for <paramref name="target"/> ran now, which refreshes the bucket whose range holds it.</summary>
    /// <param name="target">The lookup's target.</param>
    public void MarkRefreshed(NodeId target)
    {
        var index = Self.BucketIndexOf(target);
        if (index < 0)
        {
            return;
        }

        var now = _time.GetUtcNow();
        lock (_gate)
        {
            _buckets[index].LastRefreshed = now;
        }
    }

    /// <summary>When bucket <paramref name="index"/> was last refreshed (its creation time if never).</summary>
    /// <param name="index">The bucket, 0 to 159.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is outside 0..159.</exception>
    public DateTimeOffset GetLastRefreshed(int index)
    {
        CheckIndex(index);
        lock (_gate)
        {
            return _buckets[index].LastRefreshed;
        }
    }

    /// <summary>
    /// The buckets, in ascending order, not refreshed for at least <paramref name="interval"/>, among those from the
    /// nearest non-empty bucket up to 159 (nearer buckets are almost surely empty for lack of nodes, and a lookup of
    /// the node's own id covers them); empty while the table is. Refresh one with a lookup of
    /// <see cref="NodeId.CreateRandomInBucket"/>.
    /// </summary>
    /// <param name="interval">How long a bucket may stay idle; positive.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="interval"/> is not positive.</exception>
    public IReadOnlyList<int> GetBucketsToRefresh(TimeSpan interval)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero);
        var now = _time.GetUtcNow();
        var result = new List<int>();
        lock (_gate)
        {
            var nearest = Array.FindIndex(_buckets, b => b.Contacts.Count > 0);
            if (nearest < 0)
            {
                return result;
            }

            for (var i = nearest; i < _buckets.Length; i++)
            {
                if (now - _buckets[i].LastRefreshed >= interval)
                {
                    result.Add(i);
                }
            }
        }

        return result;
    }

    private bool TryGetEntry(NodeId id, out Entry entry)
    {
        lock (_gate)
        {
            var position = Locate(id, out var bucket);
            entry = position < 0 ? default : bucket!.Contacts[position];
            return position >= 0;
        }
    }

    // Under the lock: the bucket whose range holds `id` (null for self) and the id's position in it (-1 if absent).
    private int Locate(NodeId id, out Bucket? bucket)
    {
        var index = Self.BucketIndexOf(id);
        bucket = index < 0 ? null : _buckets[index];
        return bucket?.IndexOf(id) ?? -1;
    }

    private static void CheckIndex(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, NodeId.BitLength);
    }

    private readonly record struct Entry(DhtContact Contact, DateTimeOffset LastSeen);

    private sealed class Bucket(DateTimeOffset created)
    {
        public List<Entry> Contacts { get; } = [];

        public List<Entry> Replacements { get; } = [];

        public DateTimeOffset LastRefreshed { get; set; } = created;

        public int IndexOf(NodeId id) => Contacts.FindIndex(e => e.Contact.Id == id);

        public bool RemoveReplacement(NodeId id)
        {
            var at = Replacements.FindIndex(e => e.Contact.Id == id);
            if (at < 0)
            {
                return false;
            }

            Replacements.RemoveAt(at);
            return true;
        }
    }

    private sealed class FarthestFirst : IComparer<NodeId>
    {
        public static readonly FarthestFirst Instance = new();

        public int Compare(NodeId x, NodeId y) => y.CompareTo(x);
    }
}
