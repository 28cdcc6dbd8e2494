using Petals.Transport;

namespace Petals.Server;

/// <summary>The process's open-file limit (RLIMIT_NOFILE), from which the default connection limit is derived.</summary>
internal static class FileDescriptorLimit
{
    /// <summary>The soft limit on open file descriptors, or null where it cannot be read (not Linux, or getrlimit failed).</summary>
    public static long? Soft => OpenFileLimit.Soft;

    /// <summary>
    /// The default <see cref="BlockServerOptions.MaxConnections"/>: half the soft file-descriptor limit (the rest is left
    /// to model files, the DHT node and clients of the process), at least 16 and at most 4096; 1024 where the limit is
    /// unknown.
    /// </summary>
    public static int DefaultMaxConnections { get; } = Soft is { } soft ? (int)Math.Clamp(soft / 2, 16, 4096) : 1024;
}
