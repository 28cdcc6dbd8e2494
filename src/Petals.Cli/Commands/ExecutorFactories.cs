using Petals.Backends.Cpu;
using Petals.Execution;
using Petals.Tensors;

namespace Petals.Cli.Commands;

/// <summary>The executors the command line can run blocks with.</summary>
internal static class ExecutorFactories
{
    /// <summary>The managed CPU executor with <paramref name="threads"/> threads (all cores by default), quantizing weights at load as <paramref name="quantization"/> says (none by default).</summary>
    public static IBlockExecutorFactory Cpu(int? threads, WeightQuantization quantization = default)
    {
        var options = new CpuExecutorOptions { Quantization = quantization == default ? WeightQuantization.None : quantization };
        if (threads is { } t)
        {
            options.ThreadCount = t;
        }

        return new CpuBlockExecutorFactory(options);
    }
}
