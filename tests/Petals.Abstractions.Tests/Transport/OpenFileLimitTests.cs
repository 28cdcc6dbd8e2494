using System.Globalization;
using Petals.Transport;

namespace Petals.Abstractions.Tests.Transport;

public sealed class OpenFileLimitTests
{
    [Fact]
    public void The_soft_limit_is_the_one_the_kernel_reports_for_this_process()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "RLIMIT_NOFILE is read on Linux only.");
        var line = File.ReadAllLines("/proc/self/limits").Single(l => l.StartsWith("Max open files", StringComparison.Ordinal));
        var soft = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
        Assert.Equal(soft == "unlimited" ? long.MaxValue : long.Parse(soft, CultureInfo.InvariantCulture), OpenFileLimit.Soft);
    }
}
