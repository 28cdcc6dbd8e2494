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
/// Choosing a provider more than once: the last call wins. Decorators compose whatever the order relative to the
/// provider's <c>Use…</c> call. Factories run when the component is first resolved (the server's start, the client's
/// first connect), so a bad provider option fails there with its own message.
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
        Provide<IBlockExecutor, IBlockExecutorFactory>(Services(builder), PetalsServiceKeys.Server, factory);
        return builder;
    }

    /// <summary>Makes the server run its blocks with <paramref name="factory"/> (not disposed by the container).</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">The executor factory.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseExecutor(this IPetalsServerBuilder builder, IBlockExecutorFactory factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Provide<IBlockExecutor, IBlockExecutorFactory>(Services(builder), PetalsServiceKeys.Server, factory);
        return builder;
    }

    /// <summary>Makes the server listen with the transport that <paramref name="factory"/> creates when the server starts.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">Creates the transport; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseTransport(this IPetalsServerBuilder builder, Func<IServiceProvider, ITransport> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Provide<ITransport, ITransport>(Services(builder), PetalsServiceKeys.Server, factory);
        return builder;
    }

    /// <summary>Makes the server listen with <paramref name="transport"/> (not disposed by the container).</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="transport">The transport.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseTransport(this IPetalsServerBuilder builder, ITransport transport)
    {
        ArgumentNullException.ThrowIfNull(transport);
        Provide<ITransport, ITransport>(Services(builder), PetalsServiceKeys.Server, transport);
        return builder;
    }

    /// <summary>Makes the client connect with the transport that <paramref name="factory"/> creates on first use.</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="factory">Creates the transport; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UseTransport(this IPetalsClientBuilder builder, Func<IServiceProvider, ITransport> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Provide<ITransport, ITransport>(Services(builder), PetalsServiceKeys.Client, factory);
        return builder;
    }

    /// <summary>Makes the client connect with <paramref name="transport"/> (not disposed by the container).</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="transport">The transport.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UseTransport(this IPetalsClientBuilder builder, ITransport transport)
    {
        ArgumentNullException.ThrowIfNull(transport);
        Provide<ITransport, ITransport>(Services(builder), PetalsServiceKeys.Client, transport);
        return builder;
    }

    /// <summary>
    /// Makes the server announce its blocks in <paramref name="factory"/>'s discovery: <c>Joining</c> while it loads,
    /// <c>Online</c> once it listens (republished periodically), <c>Offline</c> when it stops; its wire peer id becomes
    /// the discovery's <see cref="IPeerDiscovery.LocalPeerId"/>. Providers build on it (<c>UseDhtDiscovery(…)</c>).
    /// </summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="factory">Creates the discovery when the server starts; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder UseDiscovery(this IPetalsServerBuilder builder, Func<IServiceProvider, IPeerDiscovery> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Provide<IPeerDiscovery, IPeerDiscovery>(Services(builder), PetalsServiceKeys.Server, factory);
        return builder;
    }

    /// <summary>
    /// Makes the client find servers through <paramref name="factory"/>'s discovery (resolve it with the key
    /// <see cref="PetalsServiceKeys.Client"/>). Providers build on it (<c>UseDhtDiscovery(…)</c>).
    /// </summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="factory">Creates the discovery on first use; the container disposes it if it is disposable.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder UseDiscovery(this IPetalsClientBuilder builder, Func<IServiceProvider, IPeerDiscovery> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Provide<IPeerDiscovery, IPeerDiscovery>(Services(builder), PetalsServiceKeys.Client, factory);
        return builder;
    }

    /// <summary>Wraps every executor the server creates in <paramref name="decorator"/> (e.g. a <see cref="DelegatingBlockExecutor"/>); the first <c>Use</c> is outermost.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="decorator">Wraps an executor.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder Use(this IPetalsServerBuilder builder, Func<IBlockExecutor, IBlockExecutor> decorator) =>
        Decorate(builder, decorator);

    /// <summary>Wraps the server's transport in <paramref name="decorator"/> (e.g. a <see cref="DelegatingTransport"/>); the first <c>Use</c> is outermost.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="decorator">Wraps the transport.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder Use(this IPetalsServerBuilder builder, Func<ITransport, ITransport> decorator) =>
        Decorate(builder, decorator);

    /// <summary>Wraps the server's discovery in <paramref name="decorator"/> (e.g. a <see cref="DelegatingPeerDiscovery"/>); the first <c>Use</c> is outermost.</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="decorator">Wraps the discovery.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder Use(this IPetalsServerBuilder builder, Func<IPeerDiscovery, IPeerDiscovery> decorator) =>
        Decorate(builder, decorator);

    /// <summary>Wraps the client's transport in <paramref name="decorator"/>; the first <c>Use</c> is outermost.</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="decorator">Wraps the transport.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder Use(this IPetalsClientBuilder builder, Func<ITransport, ITransport> decorator) =>
        Decorate(builder, decorator);

    /// <summary>Wraps the client's discovery in <paramref name="decorator"/>; the first <c>Use</c> is outermost.</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="decorator">Wraps the discovery.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder Use(this IPetalsClientBuilder builder, Func<IPeerDiscovery, IPeerDiscovery> decorator) =>
        Decorate(builder, decorator);

    /// <summary>Wraps a component of the server with access to the container (e.g. for a logger or a clock); the first <c>Use</c> is outermost.</summary>
    /// <typeparam name="T"><see cref="IBlockExecutor"/>, <see cref="ITransport"/> or <see cref="IPeerDiscovery"/>.</typeparam>
    /// <param name="builder">The server builder.</param>
    /// <param name="decorator">Wraps the component.</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is not a component a server has.</exception>
    public static IPetalsServerBuilder Use<T>(this IPetalsServerBuilder builder, Func<T, IServiceProvider, T> decorator)
        where T : class
    {
        Require<T>(typeof(IBlockExecutor), typeof(ITransport), typeof(IPeerDiscovery));
        AddDecorator(Services(builder), PetalsServiceKeys.Server, decorator);
        return builder;
    }

    /// <summary>Wraps a component of the client with access to the container; the first <c>Use</c> is outermost.</summary>
    /// <typeparam name="T"><see cref="ITransport"/> or <see cref="IPeerDiscovery"/>.</typeparam>
    /// <param name="builder">The client builder.</param>
    /// <param name="decorator">Wraps the component.</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is not a component a client has.</exception>
    public static IPetalsClientBuilder Use<T>(this IPetalsClientBuilder builder, Func<T, IServiceProvider, T> decorator)
        where T : class
    {
        Require<T>(typeof(ITransport), typeof(IPeerDiscovery));
        AddDecorator(Services(builder), PetalsServiceKeys.Client, decorator);
        return builder;
    }

    /// <summary>Adds a check run when the server starts, with the validation of its options (see <see cref="PetalsStartupCheck"/>).</summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="check">Returns why the server cannot start, or null.</param>
    /// <returns>The builder.</returns>
    public static IPetalsServerBuilder AddStartupCheck(this IPetalsServerBuilder builder, Func<IServiceProvider, string?> check)
    {
        ArgumentNullException.ThrowIfNull(check);
        Services(builder).AddKeyedSingleton(PetalsServiceKeys.Server, new PetalsStartupCheck(check));
        return builder;
    }

    /// <summary>Adds a check run when the client starts or connects, with the validation of its options (see <see cref="PetalsStartupCheck"/>).</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="check">Returns why the client cannot start, or null.</param>
    /// <returns>The builder.</returns>
    public static IPetalsClientBuilder AddStartupCheck(this IPetalsClientBuilder builder, Func<IServiceProvider, string?> check)
    {
        ArgumentNullException.ThrowIfNull(check);
        Services(builder).AddKeyedSingleton(PetalsServiceKeys.Client, new PetalsStartupCheck(check));
        return builder;
    }

    private static IPetalsServerBuilder Decorate<T>(IPetalsServerBuilder builder, Func<T, T> decorator)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(decorator);
        return builder.Use<T>((inner, _) => decorator(inner));
    }

    private static IPetalsClientBuilder Decorate<T>(IPetalsClientBuilder builder, Func<T, T> decorator)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(decorator);
        return builder.Use<T>((inner, _) => decorator(inner));
    }

    private static void Require<T>(params Type[] allowed)
    {
        if (Array.IndexOf(allowed, typeof(T)) < 0)
        {
            throw new ArgumentException($"{typeof(T).Name} is not a component this builder decorates; it decorates {string.Join(", ", allowed.Select(t => t.Name))}.", nameof(T));
        }
    }

    private static IServiceCollection Services(object builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder switch
        {
            IPetalsServerBuilder server => server.Services,
            IPetalsClientBuilder client => client.Services,
            _ => throw new ArgumentException("Not a Petals builder.", nameof(builder)),
        };
    }

    private static void AddDecorator<T>(IServiceCollection services, string role, Func<T, IServiceProvider, T> decorator)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(decorator);
        services.AddKeyedSingleton(role, new PetalsDecorator<T>(decorator));
        PetalsPipeline.Ensure<T>(services, role);
    }

    private static void Provide<TComponent, TProvider>(IServiceCollection services, string role, Func<IServiceProvider, TProvider> factory)
        where TComponent : class
        where TProvider : class
    {
        services.AddKeyedSingleton(PetalsServiceKeys.Provider(role), (sp, _) => factory(sp));
        PetalsPipeline.Ensure<TComponent>(services, role);
    }

    private static void Provide<TComponent, TProvider>(IServiceCollection services, string role, TProvider instance)
        where TComponent : class
        where TProvider : class
    {
        services.AddKeyedSingleton(PetalsServiceKeys.Provider(role), instance);
        PetalsPipeline.Ensure<TComponent>(services, role);
    }
}
