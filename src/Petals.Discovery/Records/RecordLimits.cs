namespace Petals.Discovery;

/// <summary>
/// Size and time limits every node applies to records it receives (in RPCs) or stores. Immutable; share one
/// instance. Defaults suit Petals announcements: a block's <c>ServerInfo</c> is a few hundred bytes.
/// </summary>
public sealed record RecordLimits
{
    /// <summary>The defaults.</summary>
    public static RecordLimits Default { get; } = new();

    /// <summary>The largest key in UTF-8 bytes. Default 256; at most 65,535 (the key length is a u16 on the wire).</summary>
    public int MaxKeyBytes { get; init; } = 256;

    /// <summary>The largest value in bytes. Default 8 KiB.</summary>
    public int MaxValueBytes { get; init; } = 8 * 1024;

    /// <summary>
    /// How far in the future an expiration may lie when a record is received. Default 6 hours: a peer announces with
    /// a short lifetime and republishes, so a record dated further out is rejected rather than pinned for days.
    /// </summary>
    public TimeSpan MaxTimeToLive { get; init; } = TimeSpan.FromHours(6);

    /// <summary>Throws when a limit is out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A limit is not positive, or <see cref="MaxKeyBytes"/> exceeds 65,535.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxKeyBytes, 1, nameof(MaxKeyBytes));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxKeyBytes, ushort.MaxValue, nameof(MaxKeyBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxValueBytes, 0, nameof(MaxValueBytes));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(MaxTimeToLive, TimeSpan.Zero, nameof(MaxTimeToLive));
    }
}
