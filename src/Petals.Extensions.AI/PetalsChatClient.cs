using Microsoft.Extensions.AI;
using Petals.Generation;

namespace Petals.Extensions.AI;

/// <summary>An <see cref="IChatClient"/> over a Petals model (local blocks, fixed peers or a swarm).</summary>
public sealed class PetalsChatClient : IChatClient
{
    private readonly PetalsModelSource _source;
    private readonly PetalsChatClientOptions _options;

    /// <summary>A chat client over <paramref name="model"/>, which the caller keeps owning (disposing the client leaves it open).</summary>
    /// <param name="model">The model; it needs a tokenizer.</param>
    /// <param name="options">Options; the defaults when null.</param>
    public PetalsChatClient(CausalLanguageModel model, PetalsChatClientOptions? options = null)
        : this(new PetalsModelSource(model), options)
    {
    }

    /// <summary>A chat client over the model <paramref name="source"/> gives (connected on first use, owned when it connects it).</summary>
    internal PetalsChatClient(PetalsModelSource source, PetalsChatClientOptions? options)
    {
        ArgumentNullException.ThrowIfNull(source);
        _source = source;
        _options = options ?? new PetalsChatClientOptions();
    }

    /// <inheritdoc />
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotImplementedException("Built by the IChatClient part of issue 16.");

    /// <inheritdoc />
    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotImplementedException("Built by the IChatClient part of issue 16.");

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null) =>
        throw new NotImplementedException("Built by the IChatClient part of issue 16.");

    /// <inheritdoc />
    public void Dispose() => _source.DisposeAsync().AsTask().GetAwaiter().GetResult();
}
