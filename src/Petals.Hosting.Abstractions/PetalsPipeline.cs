using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Petals.Discovery;
using Petals.Execution;
using Petals.Transport;

namespace Petals.Hosting;

/// <summary>
/// Registers what a role key resolves to: the provider registered under <see cref="PetalsServiceKeys.Provider"/>,
/// wrapped in the role's <see cref="PetalsDecorator{T}"/>s (first registered outermost). Registered once per role and
/// component, whatever the order of the <c>Use…</c> calls.
/// </summary>
internal static class PetalsPipeline
{
    /// <summary>Makes <paramref name="role"/>'s <typeparamref name="T"/> the decorated provider.</summary>
    public static void Ensure<T>(IServiceCollection services, string role)
        where T : class
    {
        if (typeof(T) == typeof(IBlockExecutor))
        {
            services.TryAddKeyedSingleton<IBlockExecutorFactory>(role, static (sp, key) => BuildExecutorFactory(sp, (string)key!));
            return;
        }

        services.TryAddKeyedSingleton<T>(role, static (sp, key) => Build<T>(sp, (string)key!));
    }

    /// <summary>Wraps <paramref name="inner"/> in <paramref name="decorators"/>, the first outermost.</summary>
    public static T Wrap<T>(T inner, PetalsDecorator<T>[] decorators, IServiceProvider services)
        where T : class
    {
        for (var i = decorators.Length - 1; i >= 0; i--)
        {
            inner = decorators[i].Decorate(inner, services);
        }

        return inner;
    }

    private static T Build<T>(IServiceProvider services, string role)
        where T : class
    {
        var inner = services.GetKeyedService<T>(PetalsServiceKeys.Provider(role)) ?? throw Missing(typeof(T), role);
        return Wrap(inner, [.. services.GetKeyedServices<PetalsDecorator<T>>(role)], services);
    }

    private static IBlockExecutorFactory BuildExecutorFactory(IServiceProvider services, string role)
    {
        var inner = services.GetKeyedService<IBlockExecutorFactory>(PetalsServiceKeys.Provider(role)) ?? throw Missing(typeof(IBlockExecutorFactory), role);
        PetalsDecorator<IBlockExecutor>[] decorators = [.. services.GetKeyedServices<PetalsDecorator<IBlockExecutor>>(role)];
        return decorators.Length == 0 ? inner : new DecoratedExecutorFactory(inner, decorators, services);
    }

    private static InvalidOperationException Missing(Type component, string role)
    {
        var what = component == typeof(ITransport) ? "transport (UseTcpTransport(), UseQuicTransport(), UseMemoryTransport(…) or UseTransport(…))"
            : component == typeof(IPeerDiscovery) ? "discovery (UseDhtDiscovery(…) or UseDiscovery(…))"
            : "block executor (UseCpuExecutor() or UseExecutor(…))";
        return new InvalidOperationException($"The Petals {(role == PetalsServiceKeys.Server ? "server" : "client")} has decorators of its {component.Name} but no {what} to wrap: choose one on the builder.");
    }
}
