using Microsoft.Extensions.DependencyInjection;
using Petals.Generation;

namespace Petals.Hosting;

/// <summary>
/// Connects to the swarm configured by <see cref="PetalsServiceCollectionExtensions.AddPetalsClient"/> with the registered transport.
/// Thread-safe; every call opens its own connections.
/// </summary>
public interface IPetalsClient
{
    /// <summary>
    /// Loads the client side of the model (embeddings, final norm, head, tokenizer), connects to
    /// <see cref="PetalsClientOptions.Peers"/> and checks that they form a chain over all blocks.
    /// </summary>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The distributed model; the caller disposes it (which closes its connections).</returns>
    /// <exception cref="Microsoft.Extensions.Options.OptionsValidationException">When the options are invalid.</exception>
    /// <exception cref="InvalidOperationException">When no transport was chosen on the client builder.</exception>
    /// <exception cref="Client.RemoteChainException">When the servers do not form one chain for this model.</exception>
    /// <exception cref="Transport.TransportException">When a server cannot be reached.</exception>
    Task<CausalLanguageModel> ConnectAsync(CancellationToken cancellationToken = default);
}
