using Petals.Discovery;
using Petals.Execution;
using Petals.Hosting;
using Petals.Transport;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// The generic <c>Use…</c> methods of the Petals builders, on which provider packages build theirs (<c>UseCpuExecutor</c>,
/// <c>UseTcpTransport</c>, …). When called more than once, the last call wins.
/// </summary>
public static class PetalsBuilderExtensions
{
    /// <summary>Makes the server run its blocks with the executor factory that <paramref name="factory"/> creates when the server starts.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">Creates the executor factory; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseExecutor(this IPetalsServerBuilder builder, Func<IServiceProvider, IBlockExecutorFactory> factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.AddKeyedSingleton(PetalsServiceKeys.Server, (sp, _) => factory(sp));
        return builder;
    }

    /// <summary>Makes the server run its blocks with <paramref name="factory"/> (not disposed by the container).</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">The executor factory.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseExecutor(this IPetalsServerBuilder builder, IBlockExecutorFactory factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.AddKeyedSingleton(PetalsServiceKeys.Server, factory);
        return builder;
    }

    /// <summary>Makes the server listen with the transport that <paramref name="factory"/> creates when the server starts.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">Creates the transport; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseTransport(this IPetalsServerBuilder builder, Func<IServiceProvider, ITransport> factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.AddKeyedSingleton(PetalsServiceKeys.Server, (sp, _) => factory(sp));
        return builder;
    }

    /// <summary>Makes the server listen with <paramref name="transport"/> (not disposed by the container).</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="transport">The transport, e.g. a shaping decorator.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseTransport(this IPetalsServerBuilder builder, ITransport transport)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(transport);
        builder.Services.AddKeyedSingleton(PetalsServiceKeys.Server, transport);
        return builder;
    }

    /// <summary>Makes the client connect with the transport that <paramref name="factory"/> creates on first use.</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="factory">Creates the transport; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UseTransport(this IPetalsClientBuilder builder, Func<IServiceProvider, ITransport> factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.AddKeyedSingleton(PetalsServiceKeys.Client, (sp, _) => factory(sp));
        return builder;
    }

    /// <summary>Makes the client connect with <paramref name="transport"/> (not disposed by the container).</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="transport">The transport, e.g. a shaping decorator.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UseTransport(this IPetalsClientBuilder builder, ITransport transport)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(transport);
        builder.Services.AddKeyedSingleton(PetalsServiceKeys.Client, transport);
        return builder;
    }

    /// <summary>
    /// Makes the server announce its blocks in <paramref name="factory"/>'s discovery: <c>Joining</c> while it loads,
    /// <c>Online</c> once it listens (republished periodically), <c>Offline</c> when it stops; its wire peer id becomes
    /// the discovery's <see cref="IPeerDiscovery.LocalPeerId"/>. Providers build on it (<c>UseDhtDiscovery(…)</c> in
    /// Petals.Discovery).
    /// </summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">Creates the discovery when the server starts; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseDiscovery(this IPetalsServerBuilder builder, Func<IServiceProvider, IPeerDiscovery> factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.AddKeyedSingleton(PetalsServiceKeys.Server, (sp, _) => factory(sp));
        return builder;
    }

    /// <summary>
    /// Registers the discovery the client finds servers with (resolve it with the key <c>"Petals.Client"</c>, e.g.
    /// <c>[FromKeyedServices("Petals.Client")] IPeerDiscovery</c>). Providers build on it (<c>UseDhtDiscovery(…)</c> in
    /// Petals.Discovery).
    /// </summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="factory">Creates the discovery on first use; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UseDiscovery(this IPetalsClientBuilder builder, Func<IServiceProvider, IPeerDiscovery> factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.AddKeyedSingleton(PetalsServiceKeys.Client, (sp, _) => factory(sp));
        return builder;
    }
}
