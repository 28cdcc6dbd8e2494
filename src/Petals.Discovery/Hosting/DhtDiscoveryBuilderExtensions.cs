using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Petals.Discovery;
using Petals.Hosting;
using Petals.Transport;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Chooses the DHT (<see cref="DhtPeerDiscovery"/>) as the discovery of a Petals server or client.</summary>
public static class DhtDiscoveryBuilderExtensions
{
    /// <summary>
    /// Makes the server announce its blocks in the swarm's DHT: a <see cref="DhtNode"/> is started at
    /// <see cref="DhtDiscoveryOptions.ListenAddress"/> and bootstrapped from <see cref="DhtDiscoveryOptions.InitialPeers"/>
    /// when the server starts (or first announces), and the server's wire peer id becomes the node's id. If no initial peer
    /// answers, the announcement fails, is logged, and is retried every announce interval.
    /// </summary>
    /// <param name="builder">The server builder.</param>
    /// <param name="configure">Sets the options (initial peers or a new swarm, listen address, identity file).</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentException">An option is missing, contradictory or malformed (checked at once).</exception>
    public static IPetalsServerBuilder UseDhtDiscovery(this IPetalsServerBuilder builder, Action<DhtDiscoveryOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = Configure(configure, clientMode: false);
        if (options.ClientMode)
        {
            throw new ArgumentException("A server's DHT node must be reachable: DhtDiscoveryOptions.ClientMode is for clients only.", nameof(configure));
        }

        return builder.UseDiscovery(sp => Create(sp, options, PetalsServiceKeys.Server));
    }

    /// <summary>
    /// Gives the client a DHT discovery (keyed <see cref="PetalsServiceKeys.Client"/>) to find servers with: a
    /// <see cref="DhtNode"/> started (in client mode unless <see cref="DhtDiscoveryOptions.ClientMode"/> is set false) and
    /// bootstrapped from <see cref="DhtDiscoveryOptions.InitialPeers"/> on first use.
    /// </summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="configure">Sets the options (initial peers, listen address, identity file).</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentException">An option is missing, contradictory or malformed (checked at once).</exception>
    public static IPetalsClientBuilder UseDhtDiscovery(this IPetalsClientBuilder builder, Action<DhtDiscoveryOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = Configure(configure, clientMode: true);
        return builder.UseDiscovery(sp => Create(sp, options, PetalsServiceKeys.Client));
    }

    private static DhtDiscoveryOptions Configure(Action<DhtDiscoveryOptions> configure, bool clientMode)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var options = new DhtDiscoveryOptions { ClientMode = clientMode };
        configure(options);
        options.Validate();
        return options;
    }

    private static DhtDiscoveryHost Create(IServiceProvider services, DhtDiscoveryOptions options, string role)
    {
        var transport = options.Transport
            ?? services.GetKeyedService<ITransport>(role)
            ?? throw new InvalidOperationException(
                $"UseDhtDiscovery has no transport for the DHT node: choose one on the same builder (UseTcpTransport(), …) or set DhtDiscoveryOptions.Transport.");
        var logger = services.GetService<ILoggerFactory>()?.CreateLogger<DhtDiscoveryHost>() ?? (ILogger)NullLogger.Instance;
        return new DhtDiscoveryHost(options, transport, services.GetService<TimeProvider>() ?? TimeProvider.System, logger);
    }
}
