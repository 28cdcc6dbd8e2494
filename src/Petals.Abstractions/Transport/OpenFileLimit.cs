using System.Runtime.InteropServices;

namespace Petals.Transport;

/// <summary>
/// The process's limit on open file descriptors (RLIMIT_NOFILE). Network listeners and servers derive their default
/// connection caps from it so that a flood of connections never takes the descriptors the runtime itself needs (at the
/// limit, .NET aborts with "Out of memory." when it cannot map executable memory).
/// </summary>
public static partial class OpenFileLimit
{
    private const int RlimitNofile = 7;

    /// <summary>The soft limit, or null where it cannot be read (not Linux, or getrlimit failed). Read once per process.</summary>
    public static long? Soft { get; } = ReadSoftLimit();

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
