namespace Petals.Discovery;

/// <summary>
/// The records one DHT node holds: key → (sub-key → <see cref="DhtRecord"/>), bounded by
/// <see cref="RecordStorageOptions"/>. Every stored record has passed <see cref="RecordValidator"/>; a sub-record is
/// replaced only by one with a later expiration. Expired records are dropped lazily (on reads and writes) and by
/// <see cref="Sweep"/> (which a node's maintenance runs periodically). When a bound is reached, the
/// sub-records that expire soonest are evicted to make room, but only those that expire sooner than the incoming
/// record; when that cannot make room, nothing is evicted and the incoming record is refused with
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
                RemoveRecord(existing);
            }

            var refusal = MakeRoom(record, size);
            if (refusal is not null)
            {
                if (existing is not null)
                {
                    AddRecord(existing);
                }

                return Full(record, refusal);
            }

            AddRecord(record);
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

    private static RecordValidationResult Full(DhtRecord record, string why) =>
        RecordValidationResult.Reject(RecordRejectionReason.StorageFull, $"Record '{record.Key}'/{record.SubKey} is not stored: {why}.");

    // Evicts records that expire sooner than `record` until it fits every bound, and returns null; or, when that is
    // impossible, changes nothing and returns why. Victims are chosen first and removed only once the record fits.
    private string? MakeRoom(DhtRecord record, long size)
    {
        var victims = new List<DhtRecord>();
        var victimsPerKey = new Dictionary<string, int>(StringComparer.Ordinal);
        var bytes = _bytes;
        var keys = _keys.Count;

        int Remaining(string key) => (_keys.TryGetValue(key, out var held) ? held.Count : 0) - victimsPerKey.GetValueOrDefault(key);

        void Take(DhtRecord victim)
        {
            var left = Remaining(victim.Key) - 1;
            victims.Add(victim);
            victimsPerKey[victim.Key] = victimsPerKey.GetValueOrDefault(victim.Key) + 1;
            bytes -= victim.StorageSize;
            if (left == 0)
            {
                keys--;
            }
        }

        DhtRecord? keyVictim = null;
        if (Remaining(record.Key) >= Options.MaxRecordsPerKey)
        {
            foreach (var candidate in _keys[record.Key].Values)
            {
                if (keyVictim is null || ExpirationOrder.Instance.Compare(candidate, keyVictim) < 0)
                {
                    keyVictim = candidate;
                }
            }

            if (keyVictim!.ExpirationUnixMilliseconds >= record.ExpirationUnixMilliseconds)
            {
                return $"key '{record.Key}' holds its maximum of {Options.MaxRecordsPerKey} sub-records, none expiring before this one";
            }

            Take(keyVictim);
        }

        using var soonestFirst = _byExpiration.GetEnumerator();
        while (bytes + size > Options.MaxBytes || (Remaining(record.Key) == 0 && keys >= Options.MaxKeys))
        {
            DhtRecord? next;
            do
            {
                next = soonestFirst.MoveNext() ? soonestFirst.Current : null;
            }
            while (next is not null && ReferenceEquals(next, keyVictim));

            if (next is null || next.ExpirationUnixMilliseconds >= record.ExpirationUnixMilliseconds)
            {
                return bytes + size > Options.MaxBytes
                    ? $"the storage holds {_bytes} of its {Options.MaxBytes} bytes, with too few records expiring before this one to make room"
                    : $"the storage holds its maximum of {Options.MaxKeys} keys, with no key freed by evicting records expiring before this one";
            }

            Take(next);
        }

        foreach (var victim in victims)
        {
            RemoveRecord(victim);
        }

        return null;
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
        if (!_keys.TryGetValue(record.Key, out var subRecords))
        {
            subRecords = [];
            _keys.Add(record.Key, subRecords);
        }

        subRecords.Add(record.SubKey, record);
        _byExpiration.Add(record);
        _bytes += record.StorageSize;
    }

    private void RemoveRecord(DhtRecord record)
    {
        var subRecords = _keys[record.Key];
        subRecords.Remove(record.SubKey);
        if (subRecords.Count == 0)
        {
            _keys.Remove(record.Key);
        }

        _byExpiration.Remove(record);
        _bytes -= record.StorageSize;
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
