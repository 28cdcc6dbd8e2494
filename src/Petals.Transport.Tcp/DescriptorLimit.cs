using System.Runtime.InteropServices;

namespace Petals.Transport.Tcp;

/// <summary>The process's open-file limit (RLIMIT_NOFILE), from which the listener's default open-connection cap is derived.</summary>
internal static partial class DescriptorLimit
{
    private const int RlimitNofile = 7;

    /// <summary>The soft limit on open file descriptors, or null where it cannot be read (not Linux, or getrlimit failed).</summary>
    public static long? Soft { get; } = ReadSoftLimit();

    /// <summary>The default <see cref="TcpTransportOptions.MaxOpenConnections"/>: see there.</summary>
    public static int DefaultMaxOpenConnections { get; } = Soft switch
    {
        null => 4096,
        >= 512 and var soft => (int)Math.Min(soft - 256, int.MaxValue),
        var soft => (int)Math.Max(16, soft.Value / 2),
    };

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
