using Petals.Discovery;
using Petals.Execution;
using Petals.Hosting;
using Petals.Transport;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// The generic <c>Use…</c> methods of the Petals builders, on which provider packages build theirs (<c>UseCpuExecutor</c>,
/// <c>UseTcpTransport</c>, <c>UseDhtDiscovery</c>, …), and the decorator pipeline: <c>Use(inner =&gt; outer)</c> wraps a
/// role's executors, transport or discovery, the first <c>Use</c> outermost (as <c>ChatClientBuilder.Use</c> does).
/// </summary>
/// <remarks>
/// Methods that both roles take are generic over the builder, so they return it typed for chaining. Choosing a provider
/// more than once: the last call wins. Decorators compose whatever the order relative to the provider's <c>Use…</c>
/// call. Factories run when the component is first resolved (the server's start, the client's first connect), so a bad
/// provider option fails there with its own message.
/// </remarks>
public static class PetalsBuilderExtensions
{
    /// <summary>Makes the server run its blocks with the executor factory that <paramref name="factory"/> creates when the server starts.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">Creates the executor factory; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseExecutor(this IPetalsServerBuilder builder, Func<IServiceProvider, IBlockExecutorFactory> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        return Provide<IPetalsServerBuilder, IBlockExecutor, IBlockExecutorFactory>(builder, (services, key) => services.AddKeyedSingleton(key, (sp, _) => factory(sp)));
    }

    /// <summary>Makes the server run its blocks with <paramref name="factory"/> (not disposed by the container).</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">The executor factory.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseExecutor(this IPetalsServerBuilder builder, IBlockExecutorFactory factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        return Provide<IPetalsServerBuilder, IBlockExecutor, IBlockExecutorFactory>(builder, (services, key) => services.AddKeyedSingleton(key, factory));
    }

    /// <summary>
    /// Makes the server listen, or the client connect, with the transport that <paramref name="factory"/> creates when
    /// first needed (the server's start, the client's first connect).
    /// </summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="factory">Creates the transport; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static TBuilder UseTransport<TBuilder>(this TBuilder builder, Func<IServiceProvider, ITransport> factory)
        where TBuilder : IPetalsBuilder
    {
        ArgumentNullException.ThrowIfNull(factory);
        return Provide<TBuilder, ITransport, ITransport>(builder, (services, key) => services.AddKeyedSingleton(key, (sp, _) => factory(sp)));
    }

    /// <summary>Makes the server listen, or the client connect, with <paramref name="transport"/> (not disposed by the container).</summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="transport">The transport.</param>
    /// <returns>The builder.</returns>
    public static TBuilder UseTransport<TBuilder>(this TBuilder builder, ITransport transport)
        where TBuilder : IPetalsBuilder
    {
        ArgumentNullException.ThrowIfNull(transport);
        return Provide<TBuilder, ITransport, ITransport>(builder, (services, key) => services.AddKeyedSingleton(key, transport));
    }

    /// <summary>
    /// Gives the server or client a discovery, created by <paramref name="factory"/> when first needed. A server announces
    /// its blocks there (<c>Joining</c> while it loads, <c>Online</c> once it listens, republished periodically,
    /// <c>Offline</c> when it stops) and introduces itself with the discovery's <see cref="IPeerDiscovery.LocalPeerId"/>;
    /// a client finds servers there when it is given no addresses. Providers build on it (<c>UseDhtDiscovery(…)</c>).
    /// </summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="factory">Creates the discovery; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static TBuilder UseDiscovery<TBuilder>(this TBuilder builder, Func<IServiceProvider, IPeerDiscovery> factory)
        where TBuilder : IPetalsBuilder
    {
        ArgumentNullException.ThrowIfNull(factory);
        return Provide<TBuilder, IPeerDiscovery, IPeerDiscovery>(builder, (services, key) => services.AddKeyedSingleton(key, (sp, _) => factory(sp)));
    }

    /// <summary>
    /// Makes the client route with <paramref name="factory"/>'s router instead of the default minimum-latency one (used
    /// when the client finds servers through its discovery).
    /// </summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="factory">Creates the router on first use.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UseRouter(this IPetalsClientBuilder builder, Func<IServiceProvider, Petals.Routing.IRouter> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Services(builder).AddKeyedSingleton(builder.Role, (sp, _) => factory(sp));
        return builder;
    }

    /// <summary>
    /// Makes a server that places itself (no fixed blocks) choose and move its span with <paramref name="factory"/>'s
    /// balancer instead of the default greedy one.
    /// </summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">Creates the balancer on first use.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseBlockBalancer(this IPetalsServerBuilder builder, Func<IServiceProvider, Petals.Balancing.IBlockBalancer> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Services(builder).AddKeyedSingleton(builder.Role, (sp, _) => factory(sp));
        return builder;
    }

    /// <summary>
    /// Makes the client judge servers with <paramref name="factory"/>'s peer-health policy instead of the default one
    /// (bans with backoff, smoothed round trips; used when the client finds servers through its discovery).
    /// </summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="factory">Creates the policy on first use.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UsePeerHealth(this IPetalsClientBuilder builder, Func<IServiceProvider, Petals.Routing.IPeerHealth> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Services(builder).AddKeyedSingleton(builder.Role, (sp, _) => factory(sp));
        return builder;
    }

    /// <summary>Wraps every executor the server creates in <paramref name="decorator"/> (e.g. a <see cref="DelegatingBlockExecutor"/>); the first <c>Use</c> is outermost.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="decorator">Wraps an executor.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder Use(this IPetalsServerBuilder builder, Func<IBlockExecutor, IBlockExecutor> decorator) =>
        builder.Use(Ignoring(decorator));

    /// <summary>Wraps the transport in <paramref name="decorator"/> (e.g. a <see cref="DelegatingTransport"/>); the first <c>Use</c> is outermost.</summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="decorator">Wraps the transport.</param>
    /// <returns>The builder.</returns>
    public static TBuilder Use<TBuilder>(this TBuilder builder, Func<ITransport, ITransport> decorator)
        where TBuilder : IPetalsBuilder =>
        Decorate(builder, Ignoring(decorator));

    /// <summary>Wraps the discovery in <paramref name="decorator"/> (e.g. a <see cref="DelegatingPeerDiscovery"/>); the first <c>Use</c> is outermost.</summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="decorator">Wraps the discovery.</param>
    /// <returns>The builder.</returns>
    public static TBuilder Use<TBuilder>(this TBuilder builder, Func<IPeerDiscovery, IPeerDiscovery> decorator)
        where TBuilder : IPetalsBuilder =>
        Decorate(builder, Ignoring(decorator));

    /// <summary>Wraps every executor the server creates, with access to the container (e.g. for a logger or a clock); the first <c>Use</c> is outermost.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="decorator">Wraps an executor.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder Use(this IPetalsServerBuilder builder, Func<IBlockExecutor, IServiceProvider, IBlockExecutor> decorator) =>
        Decorate(builder, decorator);

    /// <summary>Wraps the transport, with access to the container; the first <c>Use</c> is outermost.</summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="decorator">Wraps the transport.</param>
    /// <returns>The builder.</returns>
    public static TBuilder Use<TBuilder>(this TBuilder builder, Func<ITransport, IServiceProvider, ITransport> decorator)
        where TBuilder : IPetalsBuilder =>
        Decorate(builder, decorator);

    /// <summary>Wraps the discovery, with access to the container; the first <c>Use</c> is outermost.</summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="decorator">Wraps the discovery.</param>
    /// <returns>The builder.</returns>
    public static TBuilder Use<TBuilder>(this TBuilder builder, Func<IPeerDiscovery, IServiceProvider, IPeerDiscovery> decorator)
        where TBuilder : IPetalsBuilder =>
        Decorate(builder, decorator);

    /// <summary>Adds a check run when the server starts or the client starts or connects, with the validation of its options (see <see cref="PetalsStartupCheck"/>).</summary>
    /// <typeparam name="TBuilder">The server or client builder.</typeparam>
    /// <param name="builder">The builder.</param>
    /// <param name="check">Returns why the component cannot work here, or null.</param>
    /// <returns>The builder.</returns>
    public static TBuilder AddStartupCheck<TBuilder>(this TBuilder builder, Func<IServiceProvider, string?> check)
        where TBuilder : IPetalsBuilder
    {
        ArgumentNullException.ThrowIfNull(check);
        Services(builder).AddKeyedSingleton(builder.Role, new PetalsStartupCheck(check));
        return builder;
    }

    private static Func<T, IServiceProvider, T> Ignoring<T>(Func<T, T> decorator)
    {
        ArgumentNullException.ThrowIfNull(decorator);
        return (inner, _) => decorator(inner);
    }

    private static TBuilder Decorate<TBuilder, T>(TBuilder builder, Func<T, IServiceProvider, T> decorator)
        where TBuilder : IPetalsBuilder
        where T : class
    {
        ArgumentNullException.ThrowIfNull(decorator);
        var services = Services(builder);
        services.AddKeyedSingleton(builder.Role, new PetalsDecorator<T>(decorator));
        PetalsPipeline.Ensure<T>(services, builder.Role);
        return builder;
    }

    private static TBuilder Provide<TBuilder, TComponent, TProvider>(TBuilder builder, Action<IServiceCollection, string> register)
        where TBuilder : IPetalsBuilder
        where TComponent : class
        where TProvider : class
    {
        var services = Services(builder);
        register(services, PetalsServiceKeys.Provider(builder.Role));
        PetalsPipeline.Ensure<TComponent>(services, builder.Role);
        return builder;
    }

    private static IServiceCollection Services(IPetalsBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Services;
    }
}
