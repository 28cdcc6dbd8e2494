using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Petals.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers a Petals block server or client in a service collection (docs/architecture.md, "Composition (DI)").</summary>
public static class PetalsServiceCollectionExtensions
{
    /// <summary>
    /// Registers a block server as a hosted service: when the host starts it validates <see cref="PetalsServerOptions"/>, loads the
    /// span of the model with the executor chosen on the returned builder (e.g. <c>UseCpuExecutor()</c>), listens at
    /// <see cref="PetalsServerOptions.ListenAddress"/> with the transport chosen on the builder (e.g. <c>UseTcpTransport()</c>) and
    /// serves; when the host stops it stops the server, ending sessions and freeing caches. Resolve <see cref="IPetalsServer"/> for
    /// the bound address. One server per container; calling this again adds to the same options.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets the options.</param>
    /// <returns>The builder on which to choose the executor and the transport.</returns>
    public static IPetalsServerBuilder AddPetalsServer(this IServiceCollection services, Action<PetalsServerOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<PetalsServerOptions>().Configure(configure).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PetalsServerOptions>, PetalsServerOptionsValidator>(
            static sp => new PetalsServerOptionsValidator(sp)));
        services.TryAddSingleton(static sp => new PetalsServerService(
            sp,
            sp.GetRequiredService<IOptions<PetalsServerOptions>>(),
            sp.GetService<TimeProvider>(),
            sp.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance));
        services.TryAddSingleton<IPetalsServer>(static sp => sp.GetRequiredService<PetalsServerService>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, PetalsServerService>(static sp => sp.GetRequiredService<PetalsServerService>()));
        return new PetalsServerBuilder(services);
    }

    /// <summary>
    /// Registers <see cref="IPetalsClient"/>, which connects to the servers of <see cref="PetalsClientOptions.Peers"/> with the
    /// transport chosen on the returned builder (e.g. <c>UseTcpTransport()</c>). The options are validated when the host starts
    /// (and again on each connect). Calling this again adds to the same options.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets the options.</param>
    /// <returns>The builder on which to choose the transport.</returns>
    public static IPetalsClientBuilder AddPetalsClient(this IServiceCollection services, Action<PetalsClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<PetalsClientOptions>().Configure(configure).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PetalsClientOptions>, PetalsClientOptionsValidator>(
            static sp => new PetalsClientOptionsValidator(sp)));
        services.TryAddSingleton<IPetalsClient>(static sp => new PetalsClient(
            sp,
            sp.GetRequiredService<IOptions<PetalsClientOptions>>(),
            (sp.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance).CreateLogger<PetalsClient>()));
        return new PetalsClientBuilder(services);
    }
}
