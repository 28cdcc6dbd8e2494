using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Petals.Client;
using Petals.Generation;
using Petals.Hosting;
using Petals.Models;
using Petals.Testing.Transport;

namespace Petals.Extensions.AI.Tests.Infrastructure;

/// <summary>
/// Real block servers of the shared model (AddPetalsServer + the managed CPU executor) over one in-memory transport, in this
/// process; their statistics say whether a request reached the swarm.
/// </summary>
internal sealed class MemorySwarm : IAsyncDisposable
{
    private readonly List<ServiceProvider> _servers = [];

    private MemorySwarm(MemoryTransport network) => Network = network;

    /// <summary>The transport the servers listen on; clients connect through it.</summary>
    public MemoryTransport Network { get; }

    /// <summary>The servers' addresses, in block order.</summary>
    public List<string> Peers { get; } = [];

    /// <summary>Inference sessions opened on all servers since they started.</summary>
    public long SessionsOpened => _servers.Sum(s => s.GetRequiredService<IPetalsServer>().GetStatistics().SessionsOpened);

    /// <summary>Inference steps computed on all servers since they started.</summary>
    public long InferenceSteps => _servers.Sum(s => s.GetRequiredService<IPetalsServer>().GetStatistics().InferenceSteps);

    /// <summary>Inference sessions open now on all servers.</summary>
    public int ActiveSessions => _servers.Sum(s => s.GetRequiredService<IPetalsServer>().GetStatistics().ActiveSessions);

    /// <summary>Starts servers for blocks 0:3 and 3:5 of the shared model.</summary>
    public static async Task<MemorySwarm> StartAsync(CancellationToken cancellationToken)
    {
        var swarm = new MemorySwarm(new MemoryTransport());
        try
        {
            foreach (var (start, end) in new[] { (0, 3), (3, 5) })
            {
                var address = $"mem://ai-server-{start}-{end}";
                var services = new ServiceCollection();
                services.AddPetalsServer(o =>
                    {
                        o.ModelPath = SharedModel.Path;
                        o.Blocks = new BlockRange(start, end);
                        o.ListenAddress = address;
                    })
                    .UseCpuExecutor(o => o.ThreadCount = 1)
                    .UseMemoryTransport(swarm.Network);
                var provider = services.BuildServiceProvider();
                swarm._servers.Add(provider);
                foreach (var hosted in provider.GetServices<IHostedService>())
                {
                    await hosted.StartAsync(cancellationToken);
                }

                swarm.Peers.Add(address);
            }

            return swarm;
        }
        catch
        {
            await swarm.DisposeAsync();
            throw;
        }
    }

    /// <summary>Connects a client model to the servers (fixed peers); the caller disposes it.</summary>
    public Task<CausalLanguageModel> ConnectAsync(CancellationToken cancellationToken) =>
        RemoteModel.ConnectAsync(SharedModel.Path, Network, Peers.Select(Petals.Transport.PeerAddress.Parse).ToList(), cancellationToken: cancellationToken);

    /// <summary>Registers <see cref="IPetalsClient"/> for these servers in <paramref name="services"/>.</summary>
    public void AddClient(IServiceCollection services) =>
        services.AddPetalsClient(o =>
            {
                o.ModelPath = SharedModel.Path;
                foreach (var peer in Peers)
                {
                    o.Peers.Add(peer);
                }
            })
            .UseMemoryTransport(Network);

    public async ValueTask DisposeAsync()
    {
        foreach (var provider in _servers)
        {
            foreach (var hosted in provider.GetServices<IHostedService>())
            {
                await hosted.StopAsync(CancellationToken.None);
            }

            await provider.DisposeAsync();
        }
    }
}
