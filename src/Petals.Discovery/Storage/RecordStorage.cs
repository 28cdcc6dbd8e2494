namespace Petals.Discovery;

/// <summary>
/// The records one DHT node holds: key → (sub-key → <see cref="DhtRecord"/>), bounded by
/// <see cref="RecordStorageOptions"/>. Every stored record has passed <see cref="RecordValidator"/>; a sub-record is
/// replaced only by one with a later expiration. Expired records are dropped lazily (on reads and writes) and by
/// <see cref="Sweep"/> (which a node's maintenance runs periodically). Each signer holds at most
/// <see cref="RecordStorageOptions.MaxRecordsPerSigner"/> records and <see cref="RecordStorageOptions.MaxBytesPerSigner"/>
/// bytes (beyond: <see cref="RecordRejectionReason.SignerQuotaExceeded"/>). When a bound is reached, records are
/// evicted to make room in this order: first those of signers that are not established
/// (<see cref="RecordStorageOptions.EstablishedRefreshes"/>), among them the signers holding the most records, then the
/// newest; within a signer the soonest to expire. A record of signer V may be evicted for signer S's record only when
/// V is S and the record expires sooner than the incoming one; or V is not established and S is; or both are alike
/// and V holds more records than S will after storing it (or as many, V being the newer identity) — or, for the
/// sub-records of a key at <see cref="RecordStorageOptions.MaxRecordsPerKey"/>, V's expires sooner. A signer that is
/// not established can never evict an established one's record, and a flood can never evict a record of a signer
/// holding fewer records than each flooding identity.
/// When no eviction is allowed, nothing changes and the incoming record is refused with
/// <see cref="RecordRejectionReason.StorageFull"/>.
/// </summary>
/// <remarks>
/// Thread-safe: all operations take one lock and are O(log n) apart from the per-key eviction scan (bounded by
/// <see cref="RecordStorageOptions.MaxRecordsPerKey"/>). Reading and storing use the injected <see cref="TimeProvider"/>.
/// </remarks>
public sealed class RecordStorage
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Dictionary<NodeId, DhtRecord>> _keys = new(StringComparer.Ordinal);
    private readonly SortedSet<DhtRecord> _byExpiration = new(ExpirationOrder.Instance);
    private readonly Dictionary<NodeId, Signer> _signers = [];
    private readonly TimeProvider _time;
    private long _bytes;

    /// <summary>Creates an empty storage.</summary>
    /// <param name="options">The bounds; <see cref="RecordStorageOptions.Default"/> when null.</param>
    /// <param name="validator">The record validator; one with <see cref="RecordLimits.Default"/> when null.</param>
    /// <param name="timeProvider">The clock; <see cref="TimeProvider.System"/> when null.</param>
    /// <exception cref="ArgumentOutOfRangeException">A bound is out of range.</exception>
    public RecordStorage(RecordStorageOptions? options = null, RecordValidator? validator = null, TimeProvider? timeProvider = null)
    {
        Options = options ?? RecordStorageOptions.Default;
        Options.Validate();
        _time = timeProvider ?? TimeProvider.System;
        Validator = validator ?? new RecordValidator(null, _time);
    }

    /// <summary>The bounds.</summary>
    public RecordStorageOptions Options { get; }

    /// <summary>The validator every stored record passes.</summary>
    public RecordValidator Validator { get; }

    /// <summary>The number of keys held (expired records not yet swept included).</summary>
    public int KeyCount
    {
        get
        {
            lock (_gate)
            {
                return _keys.Count;
            }
        }
    }

    /// <summary>The number of sub-records held (expired records not yet swept included).</summary>
    public int RecordCount
    {
        get
        {
            lock (_gate)
            {
                return _byExpiration.Count;
            }
        }
    }

    /// <summary>The bytes held, as the sum of <see cref="DhtRecord.StorageSize"/>.</summary>
    public long ByteCount
    {
        get
        {
            lock (_gate)
            {
                return _bytes;
            }
        }
    }

    /// <summary>The number of signers holding records here.</summary>
    public int SignerCount
    {
        get
        {
            lock (_gate)
            {
                return _signers.Count;
            }
        }
    }

    /// <summary>Whether <paramref name="signer"/> is established here (its records are evicted last; see <see cref="RecordStorageOptions.EstablishedRefreshes"/>).</summary>
    /// <param name="signer">The signer's node id.</param>
    public bool IsEstablished(NodeId signer)
    {
        lock (_gate)
        {
            return _signers.TryGetValue(signer, out var state) && IsEstablished(state);
        }
    }

    /// <summary>
    /// Validates and stores <paramref name="record"/>, replacing the same peer's older sub-record under the same key.
    /// </summary>
    /// <param name="record">The record.</param>
    /// <returns>
    /// <see cref="RecordValidationResult.Accepted"/> when stored (or when the identical record was already stored);
    /// otherwise the validator's rejection, <see cref="RecordRejectionReason.Replayed"/> when a later version is
    /// stored, or <see cref="RecordRejectionReason.StorageFull"/> when no record expiring sooner can be evicted.
    /// </returns>
    public RecordValidationResult Store(DhtRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var now = _time.GetUtcNow();
        var verdict = Validator.Validate(record, now);
        if (!verdict.IsAccepted)
        {
            return verdict;
        }

        var size = record.StorageSize;
        lock (_gate)
        {
            DropExpired(now.ToUnixTimeMilliseconds());
            _keys.TryGetValue(record.Key, out var subRecords);
            DhtRecord? existing = null;
            subRecords?.TryGetValue(record.SubKey, out existing);
            verdict = RecordValidator.CheckReplacement(existing, record);
            if (!verdict.IsAccepted || (existing is not null && existing.ContentEquals(record)))
            {
                return verdict;
            }

            if (size > Options.MaxBytes)
            {
                return Full(record, $"it takes {size} bytes, more than the whole storage ({Options.MaxBytes} bytes)");
            }

            // The older version is being replaced: take it out first so that it counts as room.
            if (existing is not null)
            {
                RemoveRecord(existing, keepSigner: true);
            }

            _signers.TryGetValue(record.SubKey, out var signer);
            var refusal = CheckQuota(record, signer, size);
            var fault = refusal is null ? MakeRoom(record, size, signer) : null;
            if (refusal is not null || fault is not null)
            {
                if (existing is not null)
                {
                    AddRecord(existing);
                }
                else if (signer is { Count: 0 })
                {
                    _signers.Remove(record.SubKey);
                }

                return refusal ?? Full(record, fault!);
            }

            AddRecord(record);
            if (existing is not null)
            {
                CountRefresh(_signers[record.SubKey], now);
            }

            return RecordValidationResult.Accepted;
        }
    }

    /// <summary>The unexpired sub-records under <paramref name="key"/>, ordered by sub-key; empty when none. Drops expired ones found.</summary>
    /// <param name="key">The DHT key.</param>
    public IReadOnlyList<DhtRecord> Get(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (_gate)
        {
            DropExpired(now);
            if (!_keys.TryGetValue(key, out var subRecords))
            {
                return [];
            }

            var result = new DhtRecord[subRecords.Count];
            subRecords.Values.CopyTo(result, 0);
            Array.Sort(result, static (a, b) => a.SubKey.CompareTo(b.SubKey));
            return result;
        }
    }

    /// <summary>The unexpired sub-record of <paramref name="subKey"/> under <paramref name="key"/>, or null.</summary>
    /// <param name="key">The DHT key.</param>
    /// <param name="subKey">The signer's node id.</param>
    public DhtRecord? Get(string key, NodeId subKey)
    {
        ArgumentNullException.ThrowIfNull(key);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (_gate)
        {
            DropExpired(now);
            return _keys.TryGetValue(key, out var subRecords) && subRecords.TryGetValue(subKey, out var record) ? record : null;
        }
    }

    /// <summary>A snapshot of every unexpired record (for republication and hand-over to new neighbours), soonest-to-expire first.</summary>
    public IReadOnlyList<DhtRecord> GetAll()
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (_gate)
        {
            DropExpired(now);
            var result = new DhtRecord[_byExpiration.Count];
            _byExpiration.CopyTo(result);
            return result;
        }
    }

    /// <summary>Removes the sub-record of <paramref name="subKey"/> under <paramref name="key"/>.</summary>
    /// <param name="key">The DHT key.</param>
    /// <param name="subKey">The signer's node id.</param>
    /// <returns>Whether a record was removed.</returns>
    public bool Remove(string key, NodeId subKey)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (_gate)
        {
            if (_keys.TryGetValue(key, out var subRecords) && subRecords.TryGetValue(subKey, out var record))
            {
                RemoveRecord(record);
                return true;
            }

            return false;
        }
    }

    /// <summary>Removes every expired record now.</summary>
    /// <returns>The number of records removed.</returns>
    public int Sweep()
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (_gate)
        {
            return DropExpired(now);
        }
    }

    private RecordValidationResult? CheckQuota(DhtRecord record, Signer? signer, long size)
    {
        if (signer is null)
        {
            return null;
        }

        if (signer.Count + 1 > Options.MaxRecordsPerSigner)
        {
            return RecordValidationResult.Reject(RecordRejectionReason.SignerQuotaExceeded, $"Record '{record.Key}'/{record.SubKey} is not stored: its signer holds {signer.Count} records here, its maximum of {Options.MaxRecordsPerSigner}.");
        }

        if (signer.Bytes + size > Options.MaxBytesPerSigner)
        {
            return RecordValidationResult.Reject(RecordRejectionReason.SignerQuotaExceeded, $"Record '{record.Key}'/{record.SubKey} is not stored: its signer holds {signer.Bytes} bytes here and this record takes {size}, more than its maximum of {Options.MaxBytesPerSigner}.");
        }

        return null;
    }

    private bool IsEstablished(Signer signer) => signer.Rounds >= Options.EstablishedRefreshes;

    private void CountRefresh(Signer signer, DateTimeOffset now)
    {
        if (now - signer.LastRound >= Options.MinRefreshSpacing)
        {
            signer.Rounds++;
            signer.LastRound = now;
        }
    }

    private static RecordValidationResult Full(DhtRecord record, string why) =>
        RecordValidationResult.Reject(RecordRejectionReason.StorageFull, $"Record '{record.Key}'/{record.SubKey} is not stored: {why}.");

    // Evicts records (in the order of the class summary) until `record` fits every bound, and returns null; or, when
    // that is impossible, changes nothing and returns why. Victims are chosen first and removed only once the record fits.
    private string? MakeRoom(DhtRecord record, long size, Signer? incoming)
    {
        var victims = new HashSet<DhtRecord>(ReferenceEqualityComparer.Instance);
        var victimsPerKey = new Dictionary<string, int>(StringComparer.Ordinal);
        var victimsPerSigner = new Dictionary<NodeId, int>();
        var bytes = _bytes;
        var keys = _keys.Count;
        var incomingEstablished = incoming is not null && IsEstablished(incoming);
        var incomingCount = incoming?.Count ?? 0;

        int Remaining(string key) => (_keys.TryGetValue(key, out var held) ? held.Count : 0) - victimsPerKey.GetValueOrDefault(key);

        int Held(Signer signer) => signer.Count - victimsPerSigner.GetValueOrDefault(signer.Id);

        // `forKey`: the victim is one of the full key's sub-records, which compete (one per signer) by expiration.
        bool Evictable(DhtRecord victim, bool forKey = false)
        {
            if (victims.Contains(victim))
            {
                return false;
            }

            var sooner = victim.ExpirationUnixMilliseconds < record.ExpirationUnixMilliseconds;
            var owner = _signers[victim.SubKey];
            if (ReferenceEquals(owner, incoming))
            {
                return sooner;
            }

            var established = IsEstablished(owner);
            if (established != incomingEstablished)
            {
                return incomingEstablished;
            }

            // Alike signers: the one that would hold more goes first; at equal holdings, the newer identity.
            var held = Held(owner);
            return held > incomingCount + 1 || (held == incomingCount + 1 && incoming is not null && owner.FirstHeld > incoming.FirstHeld) || (forKey && sooner);
        }

        void Take(DhtRecord victim)
        {
            var left = Remaining(victim.Key) - 1;
            victims.Add(victim);
            victimsPerKey[victim.Key] = victimsPerKey.GetValueOrDefault(victim.Key) + 1;
            victimsPerSigner[victim.SubKey] = victimsPerSigner.GetValueOrDefault(victim.SubKey) + 1;
            bytes -= victim.StorageSize;
            if (left == 0)
            {
                keys--;
            }
        }

        // The signer whose records go first: not established before established, then most records held, then newest.
        DhtRecord? NextVictim()
        {
            Signer? worst = null;
            foreach (var signer in _signers.Values)
            {
                if (Held(signer) == 0)
                {
                    continue;
                }

                if (worst is null || CompareForEviction(signer, worst, Held) > 0)
                {
                    worst = signer;
                }
            }

            if (worst is not null)
            {
                foreach (var candidate in worst.ByExpiration)
                {
                    if (!victims.Contains(candidate))
                    {
                        if (Evictable(candidate))
                        {
                            return candidate;
                        }

                        break;
                    }
                }
            }

            // The worst signer's next record may not go: then no other signer's may either (it holds the most, and is
            // the newest among those holding as many), and only the incoming signer's own records expiring sooner can.
            if (incoming is not null)
            {
                foreach (var candidate in incoming.ByExpiration)
                {
                    if (candidate.ExpirationUnixMilliseconds >= record.ExpirationUnixMilliseconds)
                    {
                        break;
                    }

                    if (!victims.Contains(candidate))
                    {
                        return candidate;
                    }
                }
            }

            return null;
        }

        if (Remaining(record.Key) >= Options.MaxRecordsPerKey)
        {
            DhtRecord? keyVictim = null;
            foreach (var candidate in _keys[record.Key].Values)
            {
                if (Evictable(candidate, forKey: true) && (keyVictim is null || CompareForEviction(_signers[candidate.SubKey], _signers[keyVictim.SubKey], Held) > 0
                    || (ReferenceEquals(_signers[candidate.SubKey], _signers[keyVictim.SubKey]) && ExpirationOrder.Instance.Compare(candidate, keyVictim) < 0)))
                {
                    keyVictim = candidate;
                }
            }

            if (keyVictim is null)
            {
                return $"key '{record.Key}' holds its maximum of {Options.MaxRecordsPerKey} sub-records, none of which this one may evict";
            }

            Take(keyVictim);
        }

        while (bytes + size > Options.MaxBytes || (Remaining(record.Key) == 0 && keys >= Options.MaxKeys))
        {
            var next = NextVictim();
            if (next is null)
            {
                return bytes + size > Options.MaxBytes
                    ? $"the storage holds {_bytes} of its {Options.MaxBytes} bytes, with too few records this one may evict to make room"
                    : $"the storage holds its maximum of {Options.MaxKeys} keys, with no key freed by evicting records this one may evict";
            }

            Take(next);
        }

        foreach (var victim in victims)
        {
            RemoveRecord(victim);
        }

        return null;
    }

    // > 0 when `a`'s records go before `b`'s: not established first, then the signer holding more, then the newer.
    private int CompareForEviction(Signer a, Signer b, Func<Signer, int> held)
    {
        var established = IsEstablished(b).CompareTo(IsEstablished(a));
        if (established != 0)
        {
            return established;
        }

        var count = held(a).CompareTo(held(b));
        return count != 0 ? count : a.FirstHeld.CompareTo(b.FirstHeld);
    }

    private int DropExpired(long nowMilliseconds)
    {
        var removed = 0;
        while (_byExpiration.Count > 0 && _byExpiration.Min!.ExpirationUnixMilliseconds <= nowMilliseconds)
        {
            RemoveRecord(_byExpiration.Min);
            removed++;
        }

        return removed;
    }

    private void AddRecord(DhtRecord record)
    {
        if (!_signers.TryGetValue(record.SubKey, out var signer))
        {
            var now = _time.GetUtcNow();
            signer = new Signer(record.SubKey, now);
            _signers.Add(record.SubKey, signer);
        }

        signer.Count++;
        signer.Bytes += record.StorageSize;
        signer.ByExpiration.Add(record);

        if (!_keys.TryGetValue(record.Key, out var subRecords))
        {
            subRecords = [];
            _keys.Add(record.Key, subRecords);
        }

        subRecords.Add(record.SubKey, record);
        _byExpiration.Add(record);
        _bytes += record.StorageSize;
    }

    private void RemoveRecord(DhtRecord record, bool keepSigner = false)
    {
        var signer = _signers[record.SubKey];
        signer.Count--;
        signer.Bytes -= record.StorageSize;
        signer.ByExpiration.Remove(record);
        if (signer.Count == 0 && !keepSigner)
        {
            _signers.Remove(record.SubKey);
        }

        var subRecords = _keys[record.Key];
        subRecords.Remove(record.SubKey);
        if (subRecords.Count == 0)
        {
            _keys.Remove(record.Key);
        }

        _byExpiration.Remove(record);
        _bytes -= record.StorageSize;
    }

    // One signer's share of the storage and how long it has been announcing (reset when it holds nothing).
    private sealed class Signer(NodeId id, DateTimeOffset firstHeld)
    {
        public NodeId Id { get; } = id;

        public DateTimeOffset FirstHeld { get; } = firstHeld;

        public DateTimeOffset LastRound { get; set; } = firstHeld;

        public int Rounds { get; set; }

        public int Count { get; set; }

        public long Bytes { get; set; }

        public SortedSet<DhtRecord> ByExpiration { get; } = new(ExpirationOrder.Instance);
    }

    // Soonest expiration first; key and sub-key break ties, so the order is total over stored records (unique per key and sub-key).
    private sealed class ExpirationOrder : IComparer<DhtRecord>
    {
        public static readonly ExpirationOrder Instance = new();

        public int Compare(DhtRecord? x, DhtRecord? y)
        {
            if (ReferenceEquals(x, y))
            {
                return 0;
            }

            var c = x!.ExpirationUnixMilliseconds.CompareTo(y!.ExpirationUnixMilliseconds);
            if (c != 0)
            {
                return c;
            }

            c = string.CompareOrdinal(x.Key, y.Key);
            return c != 0 ? c : x.SubKey.CompareTo(y.SubKey);
        }
    }
}
