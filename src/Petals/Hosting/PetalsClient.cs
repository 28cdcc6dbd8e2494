using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Petals.Client;
using Petals.Discovery;
using Petals.Generation;
using Petals.Transport;

namespace Petals.Hosting;

/// <summary>The <see cref="IPetalsClient"/> registered by <see cref="PetalsServiceCollectionExtensions.AddPetalsClient"/>.</summary>
internal sealed class PetalsClient(IServiceProvider services, IOptions<PetalsClientOptions> options, ILogger<PetalsClient> logger) : IPetalsClient
{
    public async Task<CausalLanguageModel> ConnectAsync(CancellationToken cancellationToken = default)
    {
        var settings = options.Value; // Validates (OptionsValidationException) unless the host already did.
        var transport = services.GetKeyedService<ITransport>(PetalsServiceKeys.Client)
            ?? throw new InvalidOperationException(PetalsClientOptionsValidator.MissingTransport);
        if (settings.Peers.Count == 0)
        {
            var discovery = services.GetKeyedService<IPeerDiscovery>(PetalsServiceKeys.Client)
                ?? throw new InvalidOperationException(PetalsClientOptionsValidator.MissingPeers);
            PetalsHostingLog.ClientDiscovering(logger, discovery.LocalPeerId, transport.Name, settings.ModelPath);
            try
            {
                return Connected(await RemoteModel.ConnectAsync(
                    settings.ModelPath,
                    transport,
                    discovery,
                    settings.Sequence,
                    swarmOptions: settings.Swarm,
                    modelId: settings.ModelId,
                    timeProvider: services.GetService<TimeProvider>(),
                    logger: logger,
                    router: services.GetKeyedService<Routing.IRouter>(PetalsServiceKeys.Client),
                    health: services.GetKeyedService<Routing.IPeerHealth>(PetalsServiceKeys.Client),
                    cancellationToken: cancellationToken).ConfigureAwait(false));
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                PetalsHostingLog.ClientConnectFailed(logger, e, "the servers found through discovery");
                throw;
            }
        }

        var peers = new PeerAddress[settings.Peers.Count];
        for (var i = 0; i < peers.Length; i++)
        {
            peers[i] = PeerAddress.Parse(settings.Peers[i]);
        }

        PetalsHostingLog.ClientConnecting(logger, peers.Length, transport.Name, settings.ModelPath);
        try
        {
            return Connected(await RemoteModel.ConnectAsync(
                settings.ModelPath,
                transport,
                peers,
                settings.Sequence,
                settings.ModelId,
                cancellationToken).ConfigureAwait(false));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            PetalsHostingLog.ClientConnectFailed(logger, e, string.Join(", ", settings.Peers));
            throw;
        }
    }

    private CausalLanguageModel Connected(CausalLanguageModel model)
    {
        var spans = model.Blocks is RemoteTransformerBlocks remote ? remote.Spans.Count : 0;
        PetalsHostingLog.ClientConnected(logger, spans, model.Config.NumLayers);
        return model;
    }
}
