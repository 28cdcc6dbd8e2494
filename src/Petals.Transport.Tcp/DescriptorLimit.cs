namespace Petals.Transport.Tcp;

/// <summary>The process's open-file limit (RLIMIT_NOFILE), from which the listener's default open-connection cap is derived.</summary>
internal static class DescriptorLimit
{
    /// <summary>The soft limit on open file descriptors, or null where it cannot be read (not Linux, or getrlimit failed).</summary>
    public static long? Soft => OpenFileLimit.Soft;

    /// <summary>The default <see cref="TcpTransportOptions.MaxOpenConnections"/>: see there.</summary>
    public static int DefaultMaxOpenConnections { get; } = Soft switch
    {
        null => 4096,
        >= 512 and var soft => (int)Math.Min(soft - 256, int.MaxValue),
        var soft => (int)Math.Max(16, soft.Value / 2),
    };
}
