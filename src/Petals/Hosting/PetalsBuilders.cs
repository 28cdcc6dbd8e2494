using Microsoft.Extensions.DependencyInjection;

namespace Petals.Hosting;

/// <summary>The builder returned by <see cref="PetalsServiceCollectionExtensions.AddPetalsServer"/>.</summary>
internal sealed class PetalsServerBuilder(IServiceCollection services) : IPetalsServerBuilder
{
    public IServiceCollection Services { get; } = services;
}

/// <summary>The builder returned by <see cref="PetalsServiceCollectionExtensions.AddPetalsClient"/>.</summary>
internal sealed class PetalsClientBuilder(IServiceCollection services) : IPetalsClientBuilder
{
    public IServiceCollection Services { get; } = services;
}
