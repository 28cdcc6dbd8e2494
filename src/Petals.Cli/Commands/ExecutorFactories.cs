using Petals.Backends.Cpu;
using Petals.Execution;

namespace Petals.Cli.Commands;

/// <summary>The executors the command line can run blocks with.</summary>
internal static class ExecutorFactories
{
    /// <summary>The managed CPU executor with <paramref name="threads"/> threads (all cores by default).</summary>
    public static IBlockExecutorFactory Cpu(int? threads)
    {
        var options = new CpuExecutorOptions();
        if (threads is { } t)
        {
            options.ThreadCount = t;
        }

        return new CpuBlockExecutorFactory(options);
    }
}
