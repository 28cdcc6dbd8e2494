using System.Reflection;
using Petals.Execution;

namespace Petals.Benchmarks;

/// <summary>
/// Creates the executor factory under test by backend name. The CPU backend is looked up by its type name,
/// <c>Petals.Backends.Cpu.CpuBlockExecutorFactory</c>, so that this harness builds against the contracts alone and
/// runs whichever executor the referenced <c>Petals.Backends.Cpu</c> assembly contains.
/// </summary>
internal static class ExecutorFactories
{
    private const string CpuFactoryType = "Petals.Backends.Cpu.CpuBlockExecutorFactory";
    private const string CpuOptionsType = "Petals.Backends.Cpu.CpuExecutorOptions";

    public static IBlockExecutorFactory Create(string backend, int threads)
    {
        if (backend == "reference")
        {
            return new ReferenceBlockExecutorFactory(threads);
        }

        if (backend != "cpu")
        {
            throw new ArgumentException($"Unknown backend '{backend}'; known: cpu, reference.", nameof(backend));
        }

        var assembly = Assembly.Load("Petals.Backends.Cpu");
        var factoryType = assembly.GetType(CpuFactoryType)
            ?? throw new InvalidOperationException($"{assembly.GetName().Name} has no type {CpuFactoryType}: the CPU executor is not in this build (merge branch 'cpu').");
        var optionsType = assembly.GetType(CpuOptionsType);
        object? options = null;
        if (optionsType is not null)
        {
            options = Activator.CreateInstance(optionsType)!;
            SetThreads(options, threads);
        }

        var constructor = factoryType.GetConstructors().FirstOrDefault(c => c.GetParameters().Length == 1 && c.GetParameters()[0].ParameterType == optionsType)
            ?? factoryType.GetConstructor(Type.EmptyTypes)
            ?? throw new InvalidOperationException($"{CpuFactoryType} has neither a ({CpuOptionsType}) nor a parameterless constructor.");
        var factory = constructor.GetParameters().Length == 1 ? constructor.Invoke([options]) : constructor.Invoke([]);
        return (IBlockExecutorFactory)factory;
    }

    /// <summary>Sets the options' thread-count property (an <c>int</c> or <c>int?</c> property whose name mentions threads or parallelism).</summary>
    private static void SetThreads(object options, int threads)
    {
        foreach (var p in options.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.CanWrite && (p.PropertyType == typeof(int) || p.PropertyType == typeof(int?))
                && (p.Name.Contains("Thread", StringComparison.OrdinalIgnoreCase) || p.Name.Contains("Parallelism", StringComparison.OrdinalIgnoreCase)))
            {
                p.SetValue(options, threads);
                return;
            }
        }

        Console.Error.WriteLine($"note: {options.GetType().Name} has no thread-count property; the executor picks its own (the process is limited to {Environment.ProcessorCount} processors).");
    }

    /// <summary>Describes the options of an executor, when it exposes them through <see cref="IBlockExecutor.GetService"/>.</summary>
    public static string Describe(IBlockExecutor executor)
    {
        var assembly = executor.GetType().Assembly;
        var optionsType = assembly.GetType(CpuOptionsType);
        var options = optionsType is null ? null : executor.GetService(optionsType);
        return options?.ToString() ?? executor.ToString() ?? executor.GetType().Name;
    }
}
