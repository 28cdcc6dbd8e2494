using Microsoft.Extensions.DependencyInjection;

namespace Petals.Hosting;

/// <summary>
/// Returned by <see cref="PetalsServiceCollectionExtensions.AddPetalsServer"/>: provider packages add their <c>Use…</c>
/// extension methods to it (<c>UseCpuExecutor()</c>, <c>UseTcpTransport()</c>, <c>UseQuicTransport()</c>, <c>UseMemoryTransport(…)</c>).
/// </summary>
public interface IPetalsServerBuilder
{
    /// <summary>The service collection the server is registered in.</summary>
    IServiceCollection Services { get; }
}

/// <summary>
/// Returned by <see cref="PetalsServiceCollectionExtensions.AddPetalsClient"/>: provider packages add their <c>Use…</c>
/// extension methods to it (<c>UseTcpTransport()</c>, <c>UseQuicTransport()</c>, <c>UseMemoryTransport(…)</c>).
/// </summary>
public interface IPetalsClientBuilder
{
    /// <summary>The service collection the client is registered in.</summary>
    IServiceCollection Services { get; }
}

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

/// <summary>
/// The service keys under which the builders register their transport, executor and discovery, so a server and a client
/// in one container can use different ones (provider packages resolve the role's services with them).
/// </summary>
public static class PetalsServiceKeys
{
    /// <summary>The key of the server's services (<c>"Petals.Server"</c>).</summary>
    public const string Server = "Petals.Server";

    /// <summary>The key of the client's services (<c>"Petals.Client"</c>).</summary>
    public const string Client = "Petals.Client";
}
