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

    /// <summary>Throws when a bound is not positive.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A bound is zero or negative.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxKeys, 1, nameof(MaxKeys));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRecordsPerKey, 1, nameof(MaxRecordsPerKey));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBytes, 1, nameof(MaxBytes));
    }
}
