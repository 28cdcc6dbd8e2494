using System.Runtime.CompilerServices;

namespace Petals.Tests;

/// <summary>
/// Points the throughput cache ($XDG_CACHE_HOME/petals/throughput.json) of this test process, and of the servers it
/// starts, at a directory of its own: tests neither read a user's cached figures nor write into them.
/// </summary>
internal static class ThroughputCacheIsolation
{
    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255:The 'ModuleInitializer' attribute should not be used in libraries", Justification = "A test assembly: the environment must be set before any test starts a server.")]
    internal static void Isolate() =>
        Environment.SetEnvironmentVariable("XDG_CACHE_HOME", Path.Combine(Path.GetTempPath(), "petals-test-cache-" + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)));
}
