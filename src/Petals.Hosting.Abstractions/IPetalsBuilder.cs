using Microsoft.Extensions.DependencyInjection;

namespace Petals.Hosting;

/// <summary>
/// What a server builder and a client builder have in common: the service collection and the role their components
/// are registered under. The <c>Use…</c> methods that both roles take (transports, discoveries, their decorators) extend
/// it generically, so they keep the builder's type for chaining.
/// </summary>
public interface IPetalsBuilder
{
    /// <summary>The service collection the server or client is registered in.</summary>
    IServiceCollection Services { get; }

    /// <summary>The role key its components are registered under: <see cref="PetalsServiceKeys.Server"/> or <see cref="PetalsServiceKeys.Client"/>.</summary>
    string Role { get; }
}
