using Microsoft.Extensions.DependencyInjection;
using Petals.Discovery;
using Petals.Generation;
using Petals.Hosting;

namespace Petals.Cli.Commands;

/// <summary>
/// The client side of <c>petals generate</c> and <c>petals swarm</c>: a container with <c>AddPetalsClient</c> over TCP and TLS
/// (pinned where an address names an id, trust on first use where it does not: see <see cref="TransportSecurity"/>)
/// (and the command's DHT node as the discovery when it has one), so the commands connect exactly as a hosted client does.
/// Disposing it releases the container; dispose the model first.
/// </summary>
internal sealed class ClientHost : IAsyncDisposable
{
    private readonly ServiceProvider _provider;

    private ClientHost(ServiceProvider provider) => _provider = provider;

    /// <summary>Builds the client.</summary>
    /// <param name="configure">Sets the client's options (model path, peers, sequence and swarm options).</param>
    /// <param name="discovery">The discovery to find servers through, or null for the peers of the options.</param>
    /// <param name="multiplex">Whether streams to a peer share one connection (every peer must agree; see --no-multiplex).</param>
    public static ClientHost Create(Action<PetalsClientOptions> configure, IPeerDiscovery? discovery, bool multiplex = true)
    {
        var services = new ServiceCollection();
        var builder = services.AddPetalsClient(configure).UseTransport(TransportSecurity.Transport(multiplex: multiplex));
        if (discovery is not null)
        {
            // The command owns the DHT node, which outlives the container (a DhtPeerDiscovery over it holds nothing to dispose).
            builder.UseDiscovery(_ => discovery);
        }

        return new ClientHost(services.BuildServiceProvider());
    }

    /// <summary>Validates the options and connects (see <see cref="IPetalsClient.ConnectAsync"/>).</summary>
    public Task<CausalLanguageModel> ConnectAsync(CancellationToken cancellationToken) =>
        _provider.GetRequiredService<IPetalsClient>().ConnectAsync(cancellationToken);

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _provider.DisposeAsync();
}
