namespace Petals.Protocol;

/// <summary>Limits a peer enforces on what it receives (docs/wire-protocol.md, sections 1-4).</summary>
/// <remarks>Immutable once built; share one instance across connections.</remarks>
public sealed record ProtocolLimits
{
    /// <summary>The smallest accepted <see cref="MaxFrameSize"/>.</summary>
    public const int MinFrameSize = 1024;

    /// <summary>The default limits: 1 MiB frames, 64 MiB messages, 1 KiB strings and preambles, 4096 hypo ids.</summary>
    public static ProtocolLimits Default { get; } = new();

    /// <summary>The largest frame payload accepted and sent (bytes after the 10-byte header). Default 1 MiB.</summary>
    public int MaxFrameSize { get; init; } = 1 << 20;

    /// <summary>The largest message payload accepted, after reassembly of chunks. Default 64 MiB.</summary>
    public int MaxMessageSize { get; init; } = 64 << 20;

    /// <summary>The largest string (in UTF-8 bytes) inside a message. Default 1024.</summary>
    public int MaxStringBytes { get; init; } = 1024;

    /// <summary>The largest preamble accepted, magic and length included. Default 1024.</summary>
    public int MaxPreambleSize { get; init; } = 1024;

    /// <summary>The most hypo ids one inference step may carry. Default 4096.</summary>
    public int MaxHypoIds { get; init; } = 4096;

    /// <summary>Checks that the limits are consistent.</summary>
    /// <exception cref="ArgumentOutOfRangeException">When a limit is out of range.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxFrameSize, MinFrameSize, nameof(MaxFrameSize));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxFrameSize, int.MaxValue - FrameHeader.Size, nameof(MaxFrameSize));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxMessageSize, MaxFrameSize, nameof(MaxMessageSize));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxStringBytes, nameof(MaxStringBytes));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxStringBytes, ushort.MaxValue, nameof(MaxStringBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxPreambleSize, 64, nameof(MaxPreambleSize));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxPreambleSize, ushort.MaxValue + 6, nameof(MaxPreambleSize));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxHypoIds, nameof(MaxHypoIds));
    }
}
