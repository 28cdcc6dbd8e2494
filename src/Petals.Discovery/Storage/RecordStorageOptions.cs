namespace Petals.Discovery;

/// <summary>The bounds of one node's <see cref="RecordStorage"/>. Immutable; defaults in each property's summary.</summary>
public sealed record RecordStorageOptions
{
    /// <summary>The defaults.</summary>
    public static RecordStorageOptions Default { get; } = new();

    /// <summary>The most distinct keys stored. Default 10,000.</summary>
    public int MaxKeys { get; init; } = 10_000;

    /// <summary>The most sub-records (announcing peers) stored under one key. Default 1,024.</summary>
    public int MaxRecordsPerKey { get; init; } = 1_024;

    /// <summary>The most bytes stored, counted as the sum of <see cref="DhtRecord.StorageSize"/>. Default 64 MiB.</summary>
    public long MaxBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>The most sub-records one signer may hold in this storage (default 512: a server announcing 80 blocks of a few models fits).</summary>
    public int MaxRecordsPerSigner { get; init; } = 512;

    /// <summary>The most bytes (<see cref="DhtRecord.StorageSize"/>) one signer may hold in this storage (default 1 MiB).</summary>
    public long MaxBytesPerSigner { get; init; } = 1024L * 1024;

    /// <summary>
    /// How many refresh rounds make a signer <i>established</i> (default 2): a round is a replacement of one of its
    /// records by a later version at least <see cref="MinRefreshSpacing"/> after the previous round (or after its
    /// first record arrived), while the storage has held some record of it continuously. A live server announcing
    /// every minute is established after two minutes; an established signer's records are evicted last.
    /// </summary>
    public int EstablishedRefreshes { get; init; } = 2;

    /// <summary>The least time between two counted refresh rounds of one signer (default 30 s).</summary>
    public TimeSpan MinRefreshSpacing { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Throws when a bound is not positive.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A bound is zero or negative.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxKeys, 1, nameof(MaxKeys));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRecordsPerKey, 1, nameof(MaxRecordsPerKey));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBytes, 1, nameof(MaxBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRecordsPerSigner, 1, nameof(MaxRecordsPerSigner));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBytesPerSigner, 1, nameof(MaxBytesPerSigner));
        ArgumentOutOfRangeException.ThrowIfNegative(EstablishedRefreshes, nameof(EstablishedRefreshes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MinRefreshSpacing, TimeSpan.Zero, nameof(MinRefreshSpacing));
    }
}
