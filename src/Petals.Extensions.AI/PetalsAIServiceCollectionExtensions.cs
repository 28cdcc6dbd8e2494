using System.Globalization;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Petals.Extensions.AI;
using Petals.Generation;
using Petals.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// Registers a Petals model as the app's <see cref="IChatClient"/> or <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/>,
/// returning Microsoft.Extensions.AI's builders so that middleware (<c>UseLogging()</c>, <c>UseOpenTelemetry()</c>,
/// <c>UseDistributedCache()</c>, …) chains as with any provider.
/// </summary>
/// <remarks>
/// The model is connected on first use (not at registration or resolution) and disposed with the container. It comes from
/// a factory given here (each registration with a factory connects its own model), or else from the registered
/// <see cref="IPetalsClient"/> (<c>services.AddPetalsClient(o => …).UseTcpTransport()…</c>), whose model every registration
/// without a factory shares: a chat client and an embedding generator over the same client hold one connection. The options are validated when a host starts
/// (<c>ValidateOnStart</c>) and when the client is resolved (<see cref="OptionsValidationException"/> naming every field at fault).
/// </remarks>
public static class PetalsAIServiceCollectionExtensions
{
    private static int s_registrations;

    /// <summary>
    /// Registers an <see cref="IChatClient"/> (singleton) over the model of the registered <see cref="IPetalsClient"/>.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets the chat client's options; the defaults when null.</param>
    /// <returns>The builder of the client's pipeline, on which to add middleware.</returns>
    /// <exception cref="InvalidOperationException">On resolution, when no <see cref="IPetalsClient"/> is registered.</exception>
    public static ChatClientBuilder AddPetalsChatClient(this IServiceCollection services, Action<PetalsChatClientOptions>? configure = null) =>
        AddChatCore(services, serviceKey: null, modelFactory: null, configure);

    /// <summary>
    /// Registers an <see cref="IChatClient"/> (singleton) over the model <paramref name="modelFactory"/> connects on first use;
    /// the client owns that model and the container disposes it.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="modelFactory">Connects or loads the model (e.g. <c>RemoteModel.ConnectAsync</c>, <c>CausalLanguageModel.LoadLocal</c>); called again after a failure.</param>
    /// <param name="configure">Sets the chat client's options; the defaults when null.</param>
    /// <returns>The builder of the client's pipeline, on which to add middleware.</returns>
    public static ChatClientBuilder AddPetalsChatClient(
        this IServiceCollection services,
        Func<IServiceProvider, CancellationToken, Task<CausalLanguageModel>> modelFactory,
        Action<PetalsChatClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(modelFactory);
        return AddChatCore(services, serviceKey: null, modelFactory, configure);
    }

    /// <summary>
    /// Registers an <see cref="IChatClient"/> (keyed singleton) over the model of the <see cref="IPetalsClient"/> registered under
    /// <paramref name="serviceKey"/>, or else the unkeyed one.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="serviceKey">The key to resolve the client with (<c>[FromKeyedServices(key)]</c>, <c>GetRequiredKeyedService</c>).</param>
    /// <param name="configure">Sets the chat client's options; the defaults when null.</param>
    /// <returns>The builder of the client's pipeline, on which to add middleware.</returns>
    /// <exception cref="InvalidOperationException">On resolution, when no <see cref="IPetalsClient"/> is registered.</exception>
    public static ChatClientBuilder AddKeyedPetalsChatClient(this IServiceCollection services, object serviceKey, Action<PetalsChatClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(serviceKey);
        return AddChatCore(services, serviceKey, modelFactory: null, configure);
    }

    /// <summary>
    /// Registers an <see cref="IChatClient"/> (keyed singleton) over the model <paramref name="modelFactory"/> connects on first
    /// use; the client owns that model and the container disposes it. Register one per model to serve several.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="serviceKey">The key to resolve the client with (<c>[FromKeyedServices(key)]</c>, <c>GetRequiredKeyedService</c>).</param>
    /// <param name="modelFactory">Connects or loads the model; called again after a failure.</param>
    /// <param name="configure">Sets the chat client's options; the defaults when null.</param>
    /// <returns>The builder of the client's pipeline, on which to add middleware.</returns>
    public static ChatClientBuilder AddKeyedPetalsChatClient(
        this IServiceCollection services,
        object serviceKey,
        Func<IServiceProvider, CancellationToken, Task<CausalLanguageModel>> modelFactory,
        Action<PetalsChatClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(serviceKey);
        ArgumentNullException.ThrowIfNull(modelFactory);
        return AddChatCore(services, serviceKey, modelFactory, configure);
    }

    /// <summary>
    /// Registers an <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> of strings (singleton) over the model of the registered
    /// <see cref="IPetalsClient"/>.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets the generator's options (pooling, normalization, …); the defaults when null.</param>
    /// <returns>The builder of the generator's pipeline, on which to add middleware.</returns>
    /// <exception cref="InvalidOperationException">On resolution, when no <see cref="IPetalsClient"/> is registered.</exception>
    public static EmbeddingGeneratorBuilder<string, Embedding<float>> AddPetalsEmbeddingGenerator(
        this IServiceCollection services,
        Action<PetalsEmbeddingGeneratorOptions>? configure = null) =>
        AddEmbeddingCore(services, serviceKey: null, modelFactory: null, configure);

    /// <summary>
    /// Registers an <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> of strings (singleton) over the model
    /// <paramref name="modelFactory"/> connects on first use; the generator owns that model and the container disposes it.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="modelFactory">Connects or loads the model; called again after a failure.</param>
    /// <param name="configure">Sets the generator's options; the defaults when null.</param>
    /// <returns>The builder of the generator's pipeline, on which to add middleware.</returns>
    public static EmbeddingGeneratorBuilder<string, Embedding<float>> AddPetalsEmbeddingGenerator(
        this IServiceCollection services,
        Func<IServiceProvider, CancellationToken, Task<CausalLanguageModel>> modelFactory,
        Action<PetalsEmbeddingGeneratorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(modelFactory);
        return AddEmbeddingCore(services, serviceKey: null, modelFactory, configure);
    }

    /// <summary>
    /// Registers an <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> of strings (keyed singleton) over the model of the
    /// <see cref="IPetalsClient"/> registered under <paramref name="serviceKey"/>, or else the unkeyed one.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="serviceKey">The key to resolve the generator with.</param>
    /// <param name="configure">Sets the generator's options; the defaults when null.</param>
    /// <returns>The builder of the generator's pipeline, on which to add middleware.</returns>
    /// <exception cref="InvalidOperationException">On resolution, when no <see cref="IPetalsClient"/> is registered.</exception>
    public static EmbeddingGeneratorBuilder<string, Embedding<float>> AddKeyedPetalsEmbeddingGenerator(
        this IServiceCollection services,
        object serviceKey,
        Action<PetalsEmbeddingGeneratorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(serviceKey);
        return AddEmbeddingCore(services, serviceKey, modelFactory: null, configure);
    }

    /// <summary>
    /// Registers an <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> of strings (keyed singleton) over the model
    /// <paramref name="modelFactory"/> connects on first use; the generator owns that model and the container disposes it.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="serviceKey">The key to resolve the generator with.</param>
    /// <param name="modelFactory">Connects or loads the model; called again after a failure.</param>
    /// <param name="configure">Sets the generator's options; the defaults when null.</param>
    /// <returns>The builder of the generator's pipeline, on which to add middleware.</returns>
    public static EmbeddingGeneratorBuilder<string, Embedding<float>> AddKeyedPetalsEmbeddingGenerator(
        this IServiceCollection services,
        object serviceKey,
        Func<IServiceProvider, CancellationToken, Task<CausalLanguageModel>> modelFactory,
        Action<PetalsEmbeddingGeneratorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(serviceKey);
        ArgumentNullException.ThrowIfNull(modelFactory);
        return AddEmbeddingCore(services, serviceKey, modelFactory, configure);
    }

    private static ChatClientBuilder AddChatCore(
        IServiceCollection services,
        object? serviceKey,
        Func<IServiceProvider, CancellationToken, Task<CausalLanguageModel>>? modelFactory,
        Action<PetalsChatClientOptions>? configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        var name = OptionsName("chat", serviceKey);
        var builder = services.AddOptions<PetalsChatClientOptions>(name);
        if (configure is not null)
        {
            builder.Configure(configure);
        }

        // The container's clock stamps the responses unless the options name one.
        builder.PostConfigure<IServiceProvider>(static (o, sp) => o.TimeProvider ??= sp.GetService<TimeProvider>());
        builder.ValidateOnStart();
        services.TryAddSingleton<PetalsClientModels>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PetalsChatClientOptions>, PetalsChatClientOptionsValidator>());
        IChatClient Create(IServiceProvider sp)
        {
            var options = sp.GetRequiredService<IOptionsMonitor<PetalsChatClientOptions>>().Get(name);
            return new PetalsChatClient(
                Source(sp, serviceKey, modelFactory, "AddPetalsChatClient"),
                options,
                sp.GetService<ILoggerFactory>()?.CreateLogger<PetalsChatClient>());
        }

        return serviceKey is null ? services.AddChatClient(Create) : services.AddKeyedChatClient(serviceKey, Create);
    }

    private static EmbeddingGeneratorBuilder<string, Embedding<float>> AddEmbeddingCore(
        IServiceCollection services,
        object? serviceKey,
        Func<IServiceProvider, CancellationToken, Task<CausalLanguageModel>>? modelFactory,
        Action<PetalsEmbeddingGeneratorOptions>? configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        var name = OptionsName("embedding", serviceKey);
        var builder = services.AddOptions<PetalsEmbeddingGeneratorOptions>(name);
        if (configure is not null)
        {
            builder.Configure(configure);
        }

        builder.ValidateOnStart();
        services.TryAddSingleton<PetalsClientModels>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PetalsEmbeddingGeneratorOptions>, PetalsEmbeddingGeneratorOptionsValidator>());
        IEmbeddingGenerator<string, Embedding<float>> Create(IServiceProvider sp)
        {
            var options = sp.GetRequiredService<IOptionsMonitor<PetalsEmbeddingGeneratorOptions>>().Get(name);
            return new PetalsEmbeddingGenerator(Source(sp, serviceKey, modelFactory, "AddPetalsEmbeddingGenerator"), options, sp.GetService<TimeProvider>());
        }

        return serviceKey is null
            ? services.AddEmbeddingGenerator(Create)
            : services.AddKeyedEmbeddingGenerator(serviceKey, Create);
    }

    /// <summary>Each registration gets its own named options, so that two registrations never share (or overwrite) options.</summary>
    private static string OptionsName(string kind, object? serviceKey) =>
        string.Create(CultureInfo.InvariantCulture, $"Petals.Extensions.AI.{kind}[{serviceKey}]#{Interlocked.Increment(ref s_registrations)}");

    private static PetalsModelSource Source(
        IServiceProvider services,
        object? serviceKey,
        Func<IServiceProvider, CancellationToken, Task<CausalLanguageModel>>? modelFactory,
        string method)
    {
        if (modelFactory is not null)
        {
            return new PetalsModelSource(ct => modelFactory(services, ct));
        }

        var client = (serviceKey is null ? null : services.GetKeyedService<IPetalsClient>(serviceKey)) ?? services.GetService<IPetalsClient>()
            ?? throw new InvalidOperationException(
                $"{method} has no model: register a Petals client with services.AddPetalsClient(o => …).UseTcpTransport() (or another transport), "
                + $"or pass a model factory to {method}.");
        return services.GetRequiredService<PetalsClientModels>().For(client);
    }
}
