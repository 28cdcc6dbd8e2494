using Petals.Discovery;
using Petals.Formats;
using Petals.Generation;
using Petals.Tokenization;
using Petals.Transport;

namespace Petals.Client;

/// <summary>Loads the client side of a distributed model: embeddings, final norm, head and tokenizer here, every block on remote servers.</summary>
public static class RemoteModel
{
    /// <summary>
    /// Opens <paramref name="modelPath"/> for its embeddings, final norm, head and tokenizer only (no block's weights are
    /// read), connects to the servers in <paramref name="peers"/> and checks that they form a chain over all blocks.
    /// </summary>
    /// <param name="modelPath">A .gguf file or a Hugging Face directory: the same model the servers run.</param>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="peers">The servers' addresses.</param>
    /// <param name="options">Connection options; defaults when null.</param>
    /// <param name="modelId">The model id to announce; by default <see cref="ModelIdentity.Compute"/> of the model.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>A language model whose <see cref="CausalLanguageModel.Blocks"/> is a <see cref="RemoteTransformerBlocks"/>; disposing it closes the connections.</returns>
    /// <exception cref="ModelFormatException">When the model file is malformed.</exception>
    /// <exception cref="RemoteChainException">When the servers do not form one chain for this model.</exception>
    /// <exception cref="TransportException">When a server cannot be reached.</exception>
    public static async Task<CausalLanguageModel> ConnectAsync(
        string modelPath,
        ITransport transport,
        IReadOnlyList<PeerAddress> peers,
        RemoteSequenceOptions? options = null,
        string? modelId = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        var weights = ModelLoader.Open(modelPath);
        try
        {
            var tokenizer = TokenizerLoader.Load(modelPath);
            var head = LanguageModelHead.Load(weights);
            modelId ??= ModelIdentity.Compute(modelPath, weights.Config);
            var template = Chat.ChatTemplate.LoadForModel(modelPath, out var templateError);
            var blocks = await RemoteTransformerBlocks.ConnectAsync(
                transport,
                peers,
                weights.Config,
                modelId,
                options,
                cancellationToken).ConfigureAwait(false);
            return new CausalLanguageModel(head, blocks, tokenizer, blocks, weights) { ChatTemplate = template, ChatTemplateError = templateError, ModelId = modelId };
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }
    /// <summary>
    /// Opens <paramref name="modelPath"/> for its embeddings, final norm, head and tokenizer only, finds the servers of
    /// the model through <paramref name="discovery"/> (a <see cref="SwarmSequenceManager"/> that keeps refreshing in the
    /// background while the model lives) and connects to the route of least latency its router chooses (servers pinged,
    /// sub-ranges of spans allowed), banning and excluding servers that fail and routing again
    /// (<see cref="SwarmSequenceOptions.MaxChainAttempts"/>).
    /// </summary>
    /// <param name="modelPath">A .gguf file or a Hugging Face directory: the same model the servers run.</param>
    /// <param name="transport">The transport to reach the servers with.</param>
    /// <param name="discovery">Where the servers announce their blocks; must outlive the returned model.</param>
    /// <param name="options">Connection options; defaults when null.</param>
    /// <param name="swarmOptions">Refresh and routing options; defaults when null.</param>
    /// <param name="modelId">The model id the servers announce; by default <see cref="ModelIdentity.Compute"/> of the model.</param>
    /// <param name="timeProvider">The clock of the background refresh; the system clock when null.</param>
    /// <param name="logger">Where the sequence manager logs refreshes and excluded servers; none when null.</param>
    /// <param name="router">Chooses the routes; the minimum-latency router over <paramref name="swarmOptions"/> when null.</param>
    /// <param name="health">Judges the servers' health (bans, round trips); the default policy over <paramref name="swarmOptions"/> when null.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>A language model whose <see cref="CausalLanguageModel.Blocks"/> is a <see cref="RemoteTransformerBlocks"/>; disposing it closes the connections and stops the refresh.</returns>
    /// <exception cref="ModelFormatException">When the model file is malformed.</exception>
    /// <exception cref="RemoteChainException">When no chain of online servers covers the model (naming the uncovered blocks) or every chain tried failed.</exception>
    public static async Task<CausalLanguageModel> ConnectAsync(
        string modelPath,
        ITransport transport,
        IPeerDiscovery discovery,
        RemoteSequenceOptions? options = null,
        SwarmSequenceOptions? swarmOptions = null,
        string? modelId = null,
        TimeProvider? timeProvider = null,
        Microsoft.Extensions.Logging.ILogger? logger = null,
        Petals.Routing.IRouter? router = null,
        Petals.Routing.IPeerHealth? health = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(discovery);
        var weights = ModelLoader.Open(modelPath);
        SwarmSequenceManager? sequence = null;
        try
        {
            var tokenizer = TokenizerLoader.Load(modelPath);
            var head = LanguageModelHead.Load(weights);
            modelId ??= ModelIdentity.Compute(modelPath, weights.Config);
            var template = Chat.ChatTemplate.LoadForModel(modelPath, out var templateError);
            sequence = new SwarmSequenceManager(discovery, modelId, weights.Config.NumLayers, swarmOptions, timeProvider, logger, router, health);
            await sequence.StartAsync(cancellationToken).ConfigureAwait(false);
            var blocks = await RemoteTransformerBlocks.ConnectAsync(transport, sequence, weights.Config, options, cancellationToken).ConfigureAwait(false);
            return new CausalLanguageModel(head, blocks, tokenizer, blocks, sequence, weights) { ChatTemplate = template, ChatTemplateError = templateError, ModelId = modelId };
        }
        catch
        {
            if (sequence is not null)
            {
                await sequence.DisposeAsync().ConfigureAwait(false);
            }

            weights.Dispose();
            throw;
        }
    }
}
