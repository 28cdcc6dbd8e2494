using System.Runtime.InteropServices;

namespace Petals.Server;

/// <summary>The process's open-file limit (RLIMIT_NOFILE), from which the default connection limit is derived.</summary>
internal static partial class FileDescriptorLimit
{
    private const int RlimitNofile = 7;

    /// <summary>The soft limit on open file descriptors, or null where it cannot be read (not Linux, or getrlimit failed).</summary>
    public static long? Soft { get; } = ReadSoftLimit();

    /// <summary>
    /// The default <see cref="BlockServerOptions.MaxConnections"/>: half the soft file-descriptor limit (the rest is left
    /// to model files, the DHT node and clients of the process), at least 16 and at most 4096; 1024 where the limit is
    /// unknown.
    /// </summary>
    public static int DefaultMaxConnections { get; } = Soft is { } soft ? (int)Math.Clamp(soft / 2, 16, 4096) : 1024;

    private static long? ReadSoftLimit()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        try
        {
            return GetRLimit(RlimitNofile, out var limit) == 0 ? (long)Math.Min(limit.Current, long.MaxValue) : null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static partial int GetRLimit(int resource, out RLimit limit);
}
