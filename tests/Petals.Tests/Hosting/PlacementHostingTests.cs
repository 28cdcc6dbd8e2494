using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Petals.Backends.Cpu;
using Petals.Balancing;
using Petals.Client;
using Petals.Discovery;
using Petals.Generation;
using Petals.Hosting;
using Petals.Models;
using Petals.Testing;
using Petals.Testing.Discovery;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Tests.Hosting;

/// <summary>
/// Servers without fixed blocks on the in-memory transport and discovery: they size and place themselves where the
/// swarm is weakest, spread out when they join together, refuse a swarm of another shape, and move (without breaking a
/// client's generation) when the swarm becomes unbalanced.
/// </summary>
public sealed class PlacementHostingTests
{
    private const string ModelId = "stories260K-f32:llama-5x64-v512";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Servers_joining_one_after_another_take_the_weakest_windows_and_together_serve_the_model_as_locally()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var transport = new MemoryTransport();
        var network = new MemoryDiscoveryNetwork();
        var hosts = new List<IHost>();
        try
        {
            foreach (var name in new[] { "a", "b", "c" })
            {
                var host = Placed(transport, network, name, o => o.NumBlocks = 2);
                hosts.Add(host);
                await host.StartAsync(Ct).WaitAsync(Bound, Ct);
            }

            var servers = hosts.Select(h => h.Services.GetRequiredService<IPetalsServer>()).ToArray();
            Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 4), new BlockRange(3, 5)], servers.Select(s => s.Blocks));
            Assert.All(servers, s => Assert.True(s.Placement.ChosenBySwarm));
            Assert.Equal("2 of 5 blocks as asked (num-blocks)", servers[0].Placement.SizeReason);
            Assert.Contains("with 0 other server(s) joining or online: blocks 0:2 had 0, 0 tokens/s", servers[0].Placement.SpanReason, StringComparison.Ordinal);
            Assert.Contains("with 2 other server(s) joining or online: blocks 3:5 had 100, 0 tokens/s", servers[2].Placement.SpanReason, StringComparison.Ordinal);

            var announced = await network.CreatePeer("reader").GetServersAsync(ModelId, new BlockRange(0, 5), Ct);
            Assert.All(announced, b => Assert.Contains(b.Servers, s => s.State == ServerState.Online));
            Assert.Equal(await GenerateLocallyAsync(), await GenerateThroughSwarmAsync(transport, network, "client-1"));
        }
        finally
        {
            await StopAllAsync(hosts);
        }
    }

    [Fact]
    public async Task Servers_started_together_spread_out_and_cover_the_model()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var transport = new MemoryTransport();
        var network = new MemoryDiscoveryNetwork();
        var hosts = new[] { "a", "b", "c" }.Select(name => Placed(transport, network, name, o =>
        {
            o.NumBlocks = 2;
            o.Balancing.JoinRecheckDelay = TimeSpan.FromMilliseconds(300);
        })).ToArray();
        try
        {
            await Task.WhenAll(hosts.Select(h => Task.Run(() => h.StartAsync(Ct), Ct))).WaitAsync(Bound, Ct);
            var spans = hosts.Select(h => h.Services.GetRequiredService<IPetalsServer>().Blocks).ToArray();
            Assert.Equal(3, spans.Distinct().Count());
            Assert.All(Enumerable.Range(0, 5), b => Assert.Contains(spans, s => s.Contains(b)));
            var announced = await network.CreatePeer("reader").GetServersAsync(ModelId, new BlockRange(0, 5), Ct);
            Assert.All(announced, b => Assert.Contains(b.Servers, s => s.State == ServerState.Online));
            Assert.DoesNotContain(announced.SelectMany(b => b.Servers), s => s.State == ServerState.Joining);
        }
        finally
        {
            await StopAllAsync(hosts);
        }
    }

    [Fact]
    public void Of_servers_joining_overlapping_blocks_together_the_greater_peer_id_yields_to_the_best_span_left()
    {
        var balancer = new GreedyBlockBalancer(new Random(1));
        var online = Info("online", new BlockRange(0, 2), ServerState.Online);
        var a = Info("a", new BlockRange(3, 5), ServerState.Joining);
        var b = Info("b", new BlockRange(2, 4), ServerState.Joining);
        var raw = Enumerable.Range(0, 5).Select(k => new BlockServers(k, new[] { online, a, b }.Where(s => s.Span.Contains(k)).ToArray())).ToArray();
        var swarm = SwarmLoad.FromAnnouncements(5, raw);

        // a has the smaller id: it stays; b yields and, with a on 3:5 and 0:2 online, takes the gap at block 2.
        Assert.Null(SwarmPlacement.YieldTo(balancer, swarm, raw, "a", a.Span));
        Assert.Equal(new BlockRange(1, 3), SwarmPlacement.YieldTo(balancer, swarm, raw, "b", b.Span));

        // No overlap with a joining server, or only with online ones: the choice stands.
        Assert.Null(SwarmPlacement.YieldTo(balancer, swarm, raw, "c", new BlockRange(0, 2)));
        var settled = raw.Select(k => k with { Servers = k.Servers.Select(s => s with { State = ServerState.Online }).ToArray() }).ToArray();
        Assert.Null(SwarmPlacement.YieldTo(balancer, SwarmLoad.FromAnnouncements(5, settled), settled, "b", b.Span));
    }

    [Fact]
    public async Task A_server_moves_to_the_weak_blocks_while_a_client_generates_through_it_and_the_text_equals_local_generation()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var transport = new MemoryTransport();
        var network = new MemoryDiscoveryNetwork();
        var hosts = new List<IHost>();
        try
        {
            // Hand-placed: 2:4 slow, 4:5 fast. The placed server fills the gap 0:2.
            hosts.Add(Fixed(transport, network, "h1", new(2, 4), 100));
            hosts.Add(Fixed(transport, network, "h3", new(4, 5), 1000));
            foreach (var host in hosts)
            {
                await host.StartAsync(Ct).WaitAsync(Bound, Ct);
            }

            var mover = Placed(transport, network, "p", o =>
            {
                o.NumBlocks = 2;
                o.Balancing.MoveDrainTimeout = TimeSpan.Zero; // running sessions end at once: the client's recovery takes over
            });
            hosts.Add(mover);
            await mover.StartAsync(Ct).WaitAsync(Bound, Ct);
            var service = (PetalsServerService)mover.Services.GetRequiredService<IPetalsServer>();
            Assert.Equal(new BlockRange(0, 2), service.Blocks);
            var oldAddress = service.LocalAddress;
            var moves = new List<ServerMovedEventArgs>();
            service.Moved += (_, e) => moves.Add(e);

            // Nothing better yet: without the mover, 0:2 would be the swarm's gap.
            var stay = await service.BalanceOnceAsync(Ct).WaitAsync(Bound, Ct);
            Assert.NotNull(stay);
            Assert.False(stay.Move, stay.Reason);
            Assert.Equal("already in its best span", stay.Reason);

            var expected = await GenerateLocallyAsync(40);
            var services = ClientServices(transport, network, "client-2");
            await using var provider = services.BuildServiceProvider();
            using var model = await provider.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct);
            var pieces = new List<string>();
            BalanceDecision? decision = null;
            await foreach (var piece in model.GenerateTextAsync("Once upon a time", new GenerationOptions { MaxNewTokens = 40 }, Ct))
            {
                pieces.Add(piece);
                if (pieces.Count == 10)
                {
                    // A fast server of 0:2 joins: the mover is no longer needed there, and 2:4 is the swarm's weakest.
                    var h2 = Fixed(transport, network, "h2", new(0, 2), 1000);
                    hosts.Add(h2);
                    await h2.StartAsync(Ct).WaitAsync(Bound, Ct);
                    decision = await service.BalanceOnceAsync(Ct).WaitAsync(Bound, Ct);
                }
            }

            Assert.Equal(expected, string.Concat(pieces));
            Assert.NotNull(decision);
            Assert.True(decision.Move, decision.Reason);
            Assert.Equal(new BlockRange(2, 4), decision.Target);
            Assert.Equal("swarm throughput 100 -> 200 tokens/s (quality 0.5 < 0.75)", decision.Reason);
            Assert.Equal(new BlockRange(2, 4), service.Blocks);
            Assert.NotEqual(oldAddress, service.LocalAddress);
            Assert.Equal(1, service.Placement.Moves);
            var moved = Assert.Single(moves);
            Assert.Equal((new BlockRange(0, 2), new BlockRange(2, 4), service.LocalAddress), (moved.From, moved.To, moved.Address));

            // The swarm sees the mover online on 2:4 at its new address and offline on the blocks it left.
            var announced = await network.CreatePeer("reader").GetServersAsync(ModelId, new BlockRange(0, 5), Ct);
            for (var b = 0; b < 5; b++)
            {
                var mine = announced[b].Servers.SingleOrDefault(s => s.PeerId == "peer-p");
                if (b is 2 or 3)
                {
                    Assert.Equal((ServerState.Online, new BlockRange(2, 4), service.LocalAddress), (mine!.State, mine.Span, mine.Address));
                }
                else if (b < 2)
                {
                    Assert.Equal(ServerState.Offline, mine!.State);
                }
                else
                {
                    Assert.Null(mine);
                }
            }

            // Clients take the latest records of a server as its announcement: they see the mover online on 2:4.
            var view = SwarmView.Collect(announced, 5, DateTimeOffset.UtcNow);
            Assert.Contains(view.Online, s => s.PeerId == "peer-p" && s.Span == new BlockRange(2, 4) && s.Address == service.LocalAddress);
            Assert.Empty(view.Ignored);

            // A new generation routes over the new layout.
            Assert.Equal(expected, await GenerateThroughSwarmAsync(transport, network, "client-3", 40));
        }
        finally
        {
            await StopAllAsync(hosts);
        }
    }

    [Fact]
    public async Task When_the_only_server_of_a_block_leaves_a_periodic_rebalance_of_another_server_fills_the_gap_within_a_period()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var transport = new MemoryTransport();
        var network = new MemoryDiscoveryNetwork();
        var period = TimeSpan.FromMilliseconds(500);
        var hosts = new List<IHost>();
        try
        {
            foreach (var name in new[] { "a", "b", "c", "d" })
            {
                var host = Placed(transport, network, name, o =>
                {
                    o.NumBlocks = 2;
                    o.Balancing.BalancePeriod = period;
                    o.Balancing.Random = new Random(name[0]);
                });
                hosts.Add(host);
                await host.StartAsync(Ct).WaitAsync(Bound, Ct);
            }

            var servers = hosts.Select(h => h.Services.GetRequiredService<IPetalsServer>()).ToArray();
            Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 4), new BlockRange(3, 5), new BlockRange(0, 2)], servers.Select(s => s.Blocks));

            // Balanced already: several periods pass without a move.
            await Task.Delay(period * 3, Ct);
            Assert.All(servers, s => Assert.Equal(0, s.Placement.Moves));
            Assert.All(servers, s => Assert.NotNull(s.Placement.LastDecision));

            // b alone held block 2; it stops (announcing offline). One of the two servers of 0:2 moves over within a period.
            var moves = new System.Collections.Concurrent.ConcurrentQueue<ServerMovedEventArgs>();
            foreach (var server in servers)
            {
                server.Moved += (_, e) => moves.Enqueue(e);
            }

            var stopped = Stopwatch.StartNew();
            await hosts[1].StopAsync(Ct).WaitAsync(Bound, Ct);
            var reader = network.CreatePeer("reader");
            while (!(await reader.GetServersAsync(ModelId, new BlockRange(2, 3), Ct))[0].Servers.Any(s => s.State == ServerState.Online))
            {
                Assert.True(stopped.Elapsed < Bound, "block 2 stayed uncovered");
                await Task.Delay(20, Ct);
            }

            var filledAfter = stopped.Elapsed;
            Assert.True(filledAfter < period + TimeSpan.FromSeconds(2), $"block 2 was filled after {filledAfter.TotalMilliseconds:F0} ms, more than one period of {period.TotalMilliseconds} ms (plus slack)");
            var mover = Assert.Single(new[] { servers[0], servers[3] }, s => s.Placement.Moves == 1);
            Assert.True(mover.Blocks.Contains(2), $"the mover serves {mover.Blocks}");
            var move = Assert.Single(moves);
            Assert.Equal((new BlockRange(0, 2), mover.Blocks), (move.From, move.To));
            Assert.Equal("swarm throughput 0 -> 100 tokens/s (quality 0 < 0.75)", move.Decision.Reason);
            Assert.Equal(await GenerateLocallyAsync(), await GenerateThroughSwarmAsync(transport, network, "client-4"));
        }
        finally
        {
            await StopAllAsync(hosts);
        }
    }

    [Fact]
    public async Task A_swarm_announcing_the_same_model_id_with_another_number_of_blocks_is_not_joined()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var transport = new MemoryTransport();
        var network = new MemoryDiscoveryNetwork();
        var other = network.CreatePeer("other-shape");
        await other.AnnounceAsync(ModelId, 7, new ServerInfo
        {
            PeerId = "other-shape",
            Address = PeerAddress.Parse("mem://other-shape"),
            State = ServerState.Online,
            Span = new BlockRange(0, 7),
            Throughput = 10,
        }, TimeSpan.FromMinutes(1), Ct);
        using var host = Placed(transport, network, "x", o => o.NumBlocks = 2);
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.StartsWith($"the swarm's 1 server(s) of model '{ModelId}' announce 7 blocks, but {TestData.Stories260KGguf} has 5: not joined", refused.Message, StringComparison.Ordinal);
        Assert.False(host.Services.GetRequiredService<IPetalsServer>().IsRunning);
        Assert.DoesNotContain((await other.GetServersAsync(ModelId, new BlockRange(0, 5), Ct)).SelectMany(b => b.Servers), s => s.PeerId == "peer-x");
    }

    [Fact]
    public async Task A_swarm_whose_server_runs_the_same_model_id_with_another_hidden_size_is_not_joined()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var directory = Directory.CreateTempSubdirectory("petals-other-shape-").FullName;
        try
        {
            // Five blocks like stories260K, but hidden size 32 instead of 64, announced under stories260K's model id.
            Petals.Formats.HuggingFace.RandomLlamaCheckpoint.Write(directory, new ModelConfig
            {
                HiddenSize = 32, IntermediateSize = 64, NumLayers = 5, NumHeads = 4, NumKeyValueHeads = 4, HeadDim = 8, VocabSize = 512,
            }, seed: 3);
            var transport = new MemoryTransport();
            var network = new MemoryDiscoveryNetwork();
            using var other = Build(transport, network, "other-hidden", o =>
            {
                o.ModelPath = directory;
                o.ModelId = ModelId;
                o.Blocks = new BlockRange(0, 5);
                o.Throughput.Given = 100;
            });
            await other.StartAsync(Ct).WaitAsync(Bound, Ct);
            using var host = Placed(transport, network, "w", o => o.NumBlocks = 2);
            var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync(Ct).WaitAsync(Bound, Ct));
            Assert.Equal(
                $"server peer-other-hidden of model '{ModelId}' at mem://placement-other-hidden runs hidden size 32, but {TestData.Stories260KGguf} has 64: not joined (another model under the same id? check --model-id).",
                refused.Message);
            Assert.False(host.Services.GetRequiredService<IPetalsServer>().IsRunning);
            await other.StopAsync(Ct).WaitAsync(Bound, Ct);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Theory]
    [InlineData(6, null, "--num-blocks 6 is more than the model's 5 blocks")]
    [InlineData(null, 4096L, "memory budget 4.0 KiB (memory-budget) holds no block of this model: one needs ")]
    public async Task A_block_count_or_memory_budget_that_cannot_be_served_is_a_one_line_error(int? numBlocks, long? budget, string message)
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var host = Placed(new MemoryTransport(), new MemoryDiscoveryNetwork(), "y", o => (o.NumBlocks, o.MemoryBudget) = (numBlocks, budget));
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync(Ct).WaitAsync(Bound, Ct));
        Assert.StartsWith(message, refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', refused.Message);
    }

    [Fact]
    public async Task The_memory_budget_sizes_the_span_and_the_reason_names_the_costs()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var weights = Petals.Formats.ModelLoader.Open(TestData.Stories260KGguf);
        var serverOptions = new Petals.Server.BlockServerOptions { CacheTokens = 4096 };
        var estimate = Petals.Server.BlockMemoryEstimate.For(weights, serverOptions);
        using var host = Placed(new MemoryTransport(), new MemoryDiscoveryNetwork(), "z", o => o.MemoryBudget = estimate.BytesFor(3) + (estimate.BytesPerBlock / 2));
        await host.StartAsync(Ct).WaitAsync(Bound, Ct);
        var server = host.Services.GetRequiredService<IPetalsServer>();
        Assert.Equal(3, server.Blocks.Count);
        Assert.Contains("(memory-budget) holds 3 of 5 blocks: per block ", server.Placement.SizeReason, StringComparison.Ordinal);
        Assert.Contains("attention cache (4096 cache tokens), plus ", server.Placement.SizeReason, StringComparison.Ordinal);
        await host.StopAsync(Ct).WaitAsync(Bound, Ct);
    }

    [Fact]
    public async Task A_balancer_given_with_UseBlockBalancer_places_the_server()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        var network = new MemoryDiscoveryNetwork();
        var lastBlocks = new LastBlocksBalancer();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddPetalsServer(o =>
        {
            o.ModelPath = TestData.Stories260KGguf;
            o.ListenAddress = "mem://placement-custom";
            o.NumBlocks = 2;
            o.Throughput.Given = 100;
            o.Balancing.MaxJoinDelay = TimeSpan.Zero;
            o.Balancing.JoinRecheckDelay = TimeSpan.Zero;
            o.Balancing.BalancePeriod = Timeout.InfiniteTimeSpan;
        }).UseCpuExecutor(c => c.ThreadCount = 1).UseMemoryTransport(new MemoryTransport()).UseDiscovery(_ => network.CreatePeer("peer-custom"))
            .UseBlockBalancer(_ => lastBlocks);
        using var host = builder.Build();
        await host.StartAsync(Ct).WaitAsync(Bound, Ct);
        Assert.Equal(new BlockRange(3, 5), host.Services.GetRequiredService<IPetalsServer>().Blocks);
        Assert.Equal(1, lastBlocks.Choices);
        await host.StopAsync(Ct).WaitAsync(Bound, Ct);
    }

    [Fact]
    public void Placement_settings_are_checked_before_anything_starts()
    {
        var services = new ServiceCollection();
        services.AddPetalsServer(o =>
        {
            o.ModelPath = TestData.Stories260KGguf;
            o.Blocks = new BlockRange(0, 2);
            o.NumBlocks = 0;
            o.Balancing.BalanceQuality = 0;
        }).UseCpuExecutor().UseMemoryTransport(new MemoryTransport());
        using var provider = services.BuildServiceProvider();
        var failures = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<PetalsServerOptions>>().Value).Failures.ToArray();
        Assert.Contains("PetalsServerOptions.Blocks places the server by hand: leave NumBlocks and MemoryBudget null (they size a span the swarm places).", failures);
        Assert.Contains("PetalsServerOptions.NumBlocks must be at least 1, not 0.", failures);
        Assert.Contains(failures, f => f.StartsWith("PetalsServerOptions.Balancing", StringComparison.Ordinal) && f.Contains("BalanceQuality", StringComparison.Ordinal));

        var noDiscovery = new ServiceCollection();
        noDiscovery.AddPetalsServer(o => o.ModelPath = TestData.Stories260KGguf).UseCpuExecutor().UseMemoryTransport(new MemoryTransport());
        using var alone = noDiscovery.BuildServiceProvider();
        var missing = Assert.Throws<OptionsValidationException>(() => alone.GetRequiredService<IOptions<PetalsServerOptions>>().Value).Failures;
        Assert.Contains(PetalsServerOptionsValidator.MissingDiscoveryForPlacement, missing);
    }

    /// <summary>A balancer of another policy: always the last blocks of the model; never moves.</summary>
    private sealed class LastBlocksBalancer : IBlockBalancer
    {
        public int Choices { get; private set; }

        public BlockRange ChooseSpan(SwarmLoad swarm, int numBlocks)
        {
            Choices++;
            return new BlockRange(swarm.BlockCount - numBlocks, swarm.BlockCount);
        }

        public BalanceDecision Evaluate(SwarmLoad swarm, string localPeerId, double balanceQuality)
        {
            var span = swarm.Servers.Single(s => s.PeerId == localPeerId).Span;
            return new BalanceDecision(false, span, span, swarm.Throughput, swarm.Throughput, "never moves");
        }
    }

    private static ServerInfo Info(string peer, BlockRange span, ServerState state) => new()
    {
        PeerId = peer,
        Address = PeerAddress.Parse("mem://" + peer),
        State = state,
        Span = span,
        Throughput = 100,
    };

    private static IHost Placed(MemoryTransport transport, MemoryDiscoveryNetwork network, string name, Action<PetalsServerOptions> configure) =>
        Build(transport, network, name, o =>
        {
            o.Balancing.MaxJoinDelay = TimeSpan.Zero;
            o.Balancing.JoinRecheckDelay = TimeSpan.Zero;
            o.Balancing.BalancePeriod = Timeout.InfiniteTimeSpan; // the tests check by hand (BalanceOnceAsync)
            o.Throughput.Given = 100;
            configure(o);
        });

    private static IHost Fixed(MemoryTransport transport, MemoryDiscoveryNetwork network, string name, BlockRange blocks, double throughput) =>
        Build(transport, network, name, o =>
        {
            o.Blocks = blocks;
            o.Throughput.Given = throughput;
        });

    private static IHost Build(MemoryTransport transport, MemoryDiscoveryNetwork network, string name, Action<PetalsServerOptions> configure)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddPetalsServer(o =>
        {
            o.ModelPath = TestData.Stories260KGguf;
            o.ListenAddress = "mem://placement-" + name;
            o.Server.CacheTokens = 4096;
            o.Announcer.AnnounceInterval = TimeSpan.FromSeconds(30);
            o.Announcer.MaxNextServers = 0;
            configure(o);
        }).UseCpuExecutor(c => c.ThreadCount = 1).UseMemoryTransport(transport).UseDiscovery(_ => network.CreatePeer("peer-" + name));
        return builder.Build();
    }

    private static ServiceCollection ClientServices(MemoryTransport transport, MemoryDiscoveryNetwork network, string name)
    {
        var services = new ServiceCollection();
        services.AddPetalsClient(o => o.ModelPath = TestData.Stories260KGguf).UseMemoryTransport(transport).UseDiscovery(_ => network.CreatePeer(name));
        return services;
    }

    private static async Task<string> GenerateThroughSwarmAsync(MemoryTransport transport, MemoryDiscoveryNetwork network, string name, int tokens = 16)
    {
        await using var provider = ClientServices(transport, network, name).BuildServiceProvider();
        using var model = await provider.GetRequiredService<IPetalsClient>().ConnectAsync(Ct).WaitAsync(Bound, Ct);
        return string.Concat(await model.GenerateTextAsync("Once upon a time", new GenerationOptions { MaxNewTokens = tokens }, Ct).ToListAsync(Ct));
    }

    private static async Task<string> GenerateLocallyAsync(int tokens = 16)
    {
        using var local = CausalLanguageModel.LoadLocal(TestData.Stories260KGguf, new CpuBlockExecutorFactory(new CpuExecutorOptions { ThreadCount = 1 }));
        var text = string.Concat(await local.GenerateTextAsync("Once upon a time", new GenerationOptions { MaxNewTokens = tokens }, Ct).ToListAsync(Ct));
        Assert.False(string.IsNullOrWhiteSpace(text));
        return text;
    }

    private static async Task StopAllAsync(IEnumerable<IHost> hosts)
    {
        foreach (var host in hosts.Reverse())
        {
            await host.StopAsync(CancellationToken.None).WaitAsync(Bound, CancellationToken.None);
            host.Dispose();
        }
    }
}
