using Petals.Backends.Cpu;
using Petals.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Chooses the managed CPU executor for a Petals server registered with <c>AddPetalsServer</c>.</summary>
public static class CpuExecutorBuilderExtensions
{
    /// <summary>
    /// Makes the server run its blocks on the managed SIMD CPU executor (<see cref="CpuBlockExecutorFactory"/>). The options are
    /// applied and checked when the server starts; a bad one fails the start with a message naming it.
    /// </summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="configure">Sets the executor's options (threads, native BLAS); defaults when null.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseCpuExecutor(this IPetalsServerBuilder builder, Action<CpuExecutorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.UseExecutor(_ =>
        {
            var options = new CpuExecutorOptions();
            configure?.Invoke(options);
            return new CpuBlockExecutorFactory(options);
        });
    }
}
