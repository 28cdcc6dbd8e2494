using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Petals.Backends.Cpu;
using Petals.Client;
using Petals.Hosting;
using Petals.Models;
using Petals.Testing;
using Petals.Testing.Discovery;
using Petals.Testing.Execution;
using Petals.Testing.Transport;
using Petals.Tests.Client;

namespace Petals.Tests.Hosting;

/// <summary>
/// Hosted servers announce the quantization their executor reports (<c>ExecutorWeightsInfo</c>), and a hosted client
/// with <see cref="RemoteSequenceOptions.RequiredQuantization"/> uses only the servers that announce it.
/// </summary>
public sealed class QuantizationHostingTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Hosted_servers_announce_their_executors_quantization_and_a_requiring_client_uses_only_matching_ones()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var transport = new MemoryTransport();
        var network = new MemoryDiscoveryNetwork();
        using var plain = Build(transport, network, "q-plain", throughput: 10, decorate: null);

        // Far faster as announced, but its blocks give other outputs (noise stands for a lossy quantization).
        using var nf4 = Build(transport, network, "q-nf4", throughput: 1000, decorate: inner => new WeightsInfoExecutor(new LyingBlockExecutor(inner) { Kind = LieKind.Noise, LieOnForwards = true }, "nf4"));
        await plain.StartAsync(Ct).WaitAsync(Bound, Ct);
        await nf4.StartAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Equal("none", plain.Services.GetRequiredService<IPetalsServer>().Quantization);
        Assert.Equal("nf4", nf4.Services.GetRequiredService<IPetalsServer>().Quantization);

        var blocks = await network.CreatePeer("reader").GetServersAsync(nf4.Services.GetRequiredService<IPetalsServer>().ModelId, new BlockRange(0, 5), Ct).WaitAsync(Bound, Ct);
        Assert.All(blocks, b => Assert.Equal(
            [("peer-q-nf4", "nf4"), ("peer-q-plain", "none")],
            b.Servers.OrderBy(s => s.PeerId, StringComparer.Ordinal).Select(s => (s.PeerId, s.Quantization))));

        await using (var provider = Client(transport, network, "client-none", "none").BuildServiceProvider())
        {
            using var model = await provider.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct);
            var remote = Assert.IsType<RemoteTransformerBlocks>(model.Blocks);
            Assert.Equal(["peer-q-plain"], remote.Spans.Select(s => s.PeerId));
            Assert.Equal("none", remote.Spans[0].Info.Quantization);
        }

        await using (var provider = Client(transport, network, "client-q4k", "q4_k").BuildServiceProvider())
        {
            var error = await Assert.ThrowsAsync<RemoteChainException>(() => provider.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct));
            Assert.Contains($"required weight quantization 'q4_k': the swarm offers 'nf4' (0:5 by {PeerIds.Short("peer-q-nf4")}), 'none' (0:5 by {PeerIds.Short("peer-q-plain")})", error.Message, StringComparison.Ordinal);
        }

        await using (var provider = Client(transport, network, "client-bad", "Q4 K").BuildServiceProvider())
        {
            var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<PetalsClientOptions>>().Value);
            Assert.Contains(error.Failures, f => f.Contains("RequiredQuantization", StringComparison.Ordinal));
        }

        await nf4.StopAsync(Ct).WaitAsync(Bound, Ct);
        await plain.StopAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Equal(0, nf4.Services.GetRequiredService<IPetalsServer>().GetStatistics().InferenceSteps);
    }

    private static IHost Build(MemoryTransport transport, MemoryDiscoveryNetwork network, string name, double throughput, Func<Petals.Execution.IBlockExecutor, Petals.Execution.IBlockExecutor>? decorate)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var server = builder.Services.AddPetalsServer(o =>
        {
            o.ModelPath = TestData.Stories260KGguf;
            o.ListenAddress = "mem://" + name;
            o.Blocks = new BlockRange(0, 5);
            o.Server.CacheTokens = 4096;
            o.Throughput.Given = throughput;
            o.Announcer.MaxNextServers = 0;
        }).UseCpuExecutor(c => c.ThreadCount = 1).UseMemoryTransport(transport).UseDiscovery(_ => network.CreatePeer("peer-" + name));
        if (decorate is not null)
        {
            server.Use(decorate);
        }

        return builder.Build();
    }

    private static ServiceCollection Client(MemoryTransport transport, MemoryDiscoveryNetwork network, string name, string required)
    {
        var services = new ServiceCollection();
        services.AddPetalsClient(o =>
        {
            o.ModelPath = TestData.Stories260KGguf;
            o.Sequence.RequiredQuantization = required;
        }).UseMemoryTransport(transport).UseDiscovery(_ => network.CreatePeer(name));
        return services;
    }
}
