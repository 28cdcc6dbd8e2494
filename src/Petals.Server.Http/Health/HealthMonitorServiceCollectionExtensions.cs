using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Petals.Server.Http.Health;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the swarm health monitor (<c>petals health</c>).</summary>
public static class HealthMonitorServiceCollectionExtensions
{
    /// <summary>
    /// Adds the health monitor: a hosted service that reads the swarm through the registered
    /// <see cref="Petals.Discovery.IPeerDiscovery"/> every <see cref="HealthMonitorOptions.RefreshInterval"/> (on the registered
    /// <see cref="TimeProvider"/>, <see cref="TimeProvider.System"/> when none is). Map its endpoints with
    /// <c>MapPetalsHealthMonitor()</c>. Idempotent; the options are validated at start.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Sets the options, or null for the defaults.</param>
    /// <returns><paramref name="services"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> is null.</exception>
    public static IServiceCollection AddPetalsHealthMonitor(this IServiceCollection services, Action<HealthMonitorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<HealthMonitorOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<HealthMonitorOptions>, HealthMonitorOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<SwarmHealthMonitor>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, SwarmHealthMonitor>(sp => sp.GetRequiredService<SwarmHealthMonitor>()));
        services.TryAddSingleton<HealthAssets>();
        return services;
    }
}
