using System.Globalization;
using Petals.Backends.Cpu;
using Petals.Execution;

namespace Petals.Benchmarks;

/// <summary>Creates the executor factory under test by backend name.</summary>
internal static class ExecutorFactories
{
    public static IBlockExecutorFactory Create(BlockOptions o) => o.Backend switch
    {
        "cpu" => new CpuBlockExecutorFactory(new CpuExecutorOptions
        {
            ThreadCount = o.Threads,
            NativeBlas = o.NativeBlas switch
            {
                "never" => NativeBlasMode.Never,
                "always" => NativeBlasMode.Always,
                _ => NativeBlasMode.Auto,
            },
        }),
        _ => throw new ArgumentException($"Unknown backend '{o.Backend}'; known: cpu."),
    };

    /// <summary>Describes the executor: its options and the native BLAS in use, if any.</summary>
    public static string Describe(IBlockExecutorFactory factory, IBlockExecutor executor)
    {
        if (factory is CpuBlockExecutorFactory cpu && executor.GetService(typeof(CpuExecutorOptions)) is CpuExecutorOptions options)
        {
            return string.Create(CultureInfo.InvariantCulture, $"cpu: {options.ThreadCount} threads, native BLAS {options.NativeBlas} (>= {options.NativeBlasMinTokens} rows): {cpu.NativeBlasLibrary ?? "none loaded"}");
        }

        return executor.ToString() ?? executor.GetType().Name;
    }
}
