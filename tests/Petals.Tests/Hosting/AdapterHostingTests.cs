using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Petals.Backends.Cpu;
using Petals.Execution;
using Petals.Formats.Peft;
using Petals.Hosting;
using Petals.Models;
using Petals.Testing;
using Petals.Testing.Discovery;
using Petals.Testing.Transport;
using Petals.Tests.Formats.Peft;

namespace Petals.Tests.Hosting;

/// <summary>
/// A hosted server loads the PEFT adapters of <see cref="PetalsServerOptions.AdapterDirectories"/> for its span into
/// <c>BlockServerOptions.Adapters</c> and announces their names; bad adapters fail the start naming the adapter and file.
/// </summary>
public sealed class AdapterHostingTests : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private readonly TempDirectory _dir = TestData.CreateTempDirectory();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task A_server_loads_its_spans_adapters_and_announces_their_names()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var transport = new MemoryTransport();
        var network = new MemoryDiscoveryNetwork();
        using var host = Build(transport, network, "adapters", new BlockRange(1, 4), new()
        {
            ["style"] = PeftAdapterTests.FixtureQvDown,
            ["all-r2"] = PeftAdapterTests.FixtureAllBf16,
        });
        await host.StartAsync(Ct).WaitAsync(Bound, Ct);
        var server = host.Services.GetRequiredService<IPetalsServer>();
        Assert.Equal(["all-r2", "style"], server.Adapters.Keys.Order(StringComparer.Ordinal));

        // Only the span's blocks are loaded, and they are the file's.
        var style = server.Adapters["style"];
        Assert.Equal(new BlockRange(1, 4), style.Blocks);
        var whole = PeftAdapter.Load(PeftAdapterTests.FixtureQvDown, PeftAdapterTests.Stories);
        Assert.Equal(whole.Slice(new BlockRange(1, 4)).Values.ToArray(), style.Values.ToArray());

        var blocks = await network.CreatePeer("reader").GetServersAsync(server.ModelId, new BlockRange(1, 4), Ct).WaitAsync(Bound, Ct);
        Assert.All(blocks, b => Assert.Equal(["all-r2", "style"], Assert.Single(b.Servers).Adapters));
        await host.StopAsync(Ct).WaitAsync(Bound, Ct);
    }

    [Fact]
    public async Task A_server_placed_by_the_swarm_loads_the_adapters_of_the_span_it_picked_and_reloads_them_when_it_moves()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var transport = new MemoryTransport();
        var network = new MemoryDiscoveryNetwork();
        var whole = PeftAdapter.Load(PeftAdapterTests.FixtureQvDown, PeftAdapterTests.Stories);
        var hosts = new List<IHost>();
        try
        {
            // Hand-placed: 2:4 slow, 4:5 fast; the placed server takes the gap 0:2.
            hosts.Add(Build(transport, network, "m1", new BlockRange(2, 4), [], throughput: 100));
            hosts.Add(Build(transport, network, "m3", new BlockRange(4, 5), [], throughput: 1000));
            foreach (var h in hosts)
            {
                await h.StartAsync(Ct).WaitAsync(Bound, Ct);
            }

            var mover = Build(transport, network, "mover", null, new() { ["style"] = PeftAdapterTests.FixtureQvDown }, throughput: 100);
            hosts.Add(mover);
            await mover.StartAsync(Ct).WaitAsync(Bound, Ct);
            var service = (PetalsServerService)mover.Services.GetRequiredService<IPetalsServer>();
            Assert.Equal(new BlockRange(0, 2), service.Blocks);
            Assert.Equal(whole.Slice(new BlockRange(0, 2)).Values.ToArray(), service.Adapters["style"].Values.ToArray());

            // A fast server of 0:2 joins: the mover moves to the weakest span, 2:4, with the adapter's blocks 2:4.
            var m2 = Build(transport, network, "m2", new BlockRange(0, 2), [], throughput: 1000);
            hosts.Add(m2);
            await m2.StartAsync(Ct).WaitAsync(Bound, Ct);
            var decision = await service.BalanceOnceAsync(Ct).WaitAsync(Bound, Ct);
            Assert.True(decision!.Move, decision.Reason);
            Assert.Equal(new BlockRange(2, 4), service.Blocks);
            Assert.Equal(new BlockRange(2, 4), service.Adapters["style"].Blocks);
            Assert.Equal(whole.Slice(new BlockRange(2, 4)).Values.ToArray(), service.Adapters["style"].Values.ToArray());

            var announced = await network.CreatePeer("reader").GetServersAsync(service.ModelId, new BlockRange(2, 4), Ct).WaitAsync(Bound, Ct);
            Assert.All(announced, b => Assert.Equal(["style"], b.Servers.Single(s => s.PeerId == "peer-mover").Adapters));
        }
        finally
        {
            foreach (var h in hosts)
            {
                await h.StopAsync(CancellationToken.None).WaitAsync(Bound, Ct);
                h.Dispose();
            }
        }
    }

    [Fact]
    public async Task An_adapter_that_does_not_load_fails_the_start_naming_the_adapter_and_the_file()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var broken = Path.Combine(_dir.Path, "broken");
        Directory.CreateDirectory(broken);
        File.Copy(Path.Combine(PeftAdapterTests.FixtureQvDown, PeftAdapter.ConfigFileName), Path.Combine(broken, PeftAdapter.ConfigFileName));
        using var host = Build(new MemoryTransport(), new MemoryDiscoveryNetwork(), "broken", new BlockRange(0, 5), new() { ["style"] = broken });
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.Contains("'style'", error.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(broken, PeftAdapter.WeightsFileName), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_adapter_names_and_missing_directories_fail_validation()
    {
        using var host = Build(new MemoryTransport(), new MemoryDiscoveryNetwork(), "invalid", new BlockRange(0, 5), new()
        {
            ["bad name"] = PeftAdapterTests.FixtureQvDown,
            ["gone"] = Path.Combine(_dir.Path, "nowhere"),
        });
        var error = Assert.Throws<OptionsValidationException>(() => host.Services.GetRequiredService<IOptions<PetalsServerOptions>>().Value);
        Assert.Contains(error.Failures, f => f.Contains("'bad name'", StringComparison.Ordinal));
        Assert.Contains(error.Failures, f => f.Contains("AdapterDirectories['gone']", StringComparison.Ordinal) && f.Contains("does not exist", StringComparison.Ordinal));
    }

    private static IHost Build(MemoryTransport transport, MemoryDiscoveryNetwork network, string name, BlockRange? blocks, Dictionary<string, string> adapters, double throughput = 10)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddPetalsServer(o =>
        {
            o.ModelPath = TestData.Stories260KGguf;
            o.ListenAddress = "mem://" + name;
            o.Blocks = blocks;
            if (blocks is null)
            {
                o.NumBlocks = 2;
                o.Balancing.MaxJoinDelay = TimeSpan.Zero;
                o.Balancing.JoinRecheckDelay = TimeSpan.Zero;
                o.Balancing.BalancePeriod = Timeout.InfiniteTimeSpan; // checked by hand (BalanceOnceAsync)
                o.Balancing.MoveDrainTimeout = TimeSpan.Zero;
            }

            o.Server.CacheTokens = 4096;
            o.Throughput.Given = throughput;
            o.Announcer.AnnounceInterval = TimeSpan.FromSeconds(30);
            o.Announcer.MaxNextServers = 0;
            foreach (var (adapter, directory) in adapters)
            {
                o.AdapterDirectories[adapter] = directory;
            }
        }).UseCpuExecutor(c => c.ThreadCount = 1).UseMemoryTransport(transport).UseDiscovery(_ => network.CreatePeer("peer-" + name));
        return builder.Build();
    }
}
