using System.Text;
using Petals.Models;
using Petals.Testing.Time;
using Petals.Testing.Transport;
using Petals.Transport;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Network;

/// <summary>DhtNode hardening: client mode, bootstrap addresses with a peer id, lost peers and partition healing.</summary>
public sealed class DhtNodeHardeningTests
{
    private static readonly TimeSpan Bound = DhtTestNetwork.Bound;

    private static byte[] ValueOf(string key) => Encoding.UTF8.GetBytes("value of " + key);

    [Fact]
    public async Task A_client_mode_node_bootstraps_finds_gets_and_stores_but_is_never_in_a_routing_table()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        await network.BuildAsync(25, new Random(11), ct);
        var client = new DhtNode(DhtTestNetwork.Identity(500), network.Options, network.Time);
        await using (client)
        {
            await client.StartAsync(network.Transport, ct).WaitAsync(Bound, ct);
            Assert.True(client.IsClientMode);
            Assert.True(client.IsRunning);
            Assert.True(client.LocalAddress.IsEmpty);
            Assert.Equal(1, await client.BootstrapAsync([network.Nodes[3].LocalAddress], ct).WaitAsync(Bound, ct));
            Assert.True(client.Routing.Count >= 20, $"The client knows {client.Routing.Count} nodes after joining.");

            var target = network.Nodes[17];
            var lookup = await client.FindNodeAsync(target.Id, ct).WaitAsync(Bound, ct);
            Assert.Equal(target.Contact, lookup.Closest[0]);

            // A client stores at the k closest listening nodes and keeps no replica itself.
            var record = Signed(client.Identity, "client-key", ValueOf("client-key"), network.Time.GetUtcNow().AddHours(3));
            var stored = await client.StoreAsync(record, ct).WaitAsync(Bound, ct);
            Assert.Equal(20, stored.AcceptedCount);
            Assert.DoesNotContain(stored.Replies, r => r.Node.Id == client.Id);
            Assert.Equal(0, client.Storage.RecordCount);
            Assert.True((await network.Nodes[5].GetAsync("client-key", ct).WaitAsync(Bound, ct)).Found);

            var server = network.Nodes[8];
            var serverRecord = Signed(server.Identity, "server-key", ValueOf("server-key"), network.Time.GetUtcNow().AddHours(1));
            await server.StoreAsync(serverRecord, ct).WaitAsync(Bound, ct);
            var got = await client.GetAsync("server-key", ct).WaitAsync(Bound, ct);
            Assert.Equal(ValueOf("server-key"), Assert.Single(got.Records).Value.ToArray());

            // Every node answered the client, yet none keeps it (nor could hand it out in NODES), before or after a refresh.
            network.Time.Advance(network.Options.RefreshInterval);
            await client.RefreshAsync(ct).WaitAsync(Bound, ct);
            foreach (var node in network.Nodes)
            {
                await node.RefreshAsync(ct).WaitAsync(Bound, ct);
            }

            Assert.All(network.Nodes, n => Assert.Null(n.Routing.Find(client.Id)));
            Assert.All(network.Nodes, n => Assert.DoesNotContain(Enumerable.Range(0, NodeId.BitLength).SelectMany(n.Routing.GetReplacements), c => c.Id == client.Id));
            Assert.Equal(1, await client.RepublishAsync(ct).WaitAsync(Bound, ct));
        }
    }

    [Fact]
    public async Task A_client_mode_node_reads_server_announcements_through_DhtPeerDiscovery()
    {
        var ct = TestContext.Current.CancellationToken;
        const string Model = "client-mode-model";
        await using var network = new DhtTestNetwork();
        await network.BuildAsync(12, new Random(21), ct);
        var servers = network.Nodes.Take(2).Select(n => new DhtPeerDiscovery(n, network.Time)).ToArray();
        for (var i = 0; i < servers.Length; i++)
        {
            var info = new ServerInfo
            {
                PeerId = servers[i].LocalPeerId,
                Address = PeerAddress.Parse($"tcp://127.0.0.1:{6000 + i}"),
                State = ServerState.Online,
                Span = new BlockRange(2 * i, (2 * i) + 2),
                Throughput = 5,
                CacheTokensLeft = 100,
                Version = "test",
            };
            await servers[i].AnnounceAsync(Model, 4, info, TimeSpan.FromMinutes(5), ct).WaitAsync(Bound, ct);
        }

        var client = new DhtNode(DhtTestNetwork.Identity(501), network.Options, network.Time);
        await using (client)
        {
            await client.StartAsync(network.Transport, ct).WaitAsync(Bound, ct);
            Assert.Equal(1, await client.BootstrapAsync([network.Nodes[^1].LocalAddress], ct).WaitAsync(Bound, ct));
            var discovery = new DhtPeerDiscovery(client, network.Time);
            var blocks = await discovery.GetServersAsync(Model, new BlockRange(0, 4), ct).WaitAsync(Bound, ct);
            Assert.Equal([servers[0].LocalPeerId, servers[0].LocalPeerId, servers[1].LocalPeerId, servers[1].LocalPeerId], blocks.Select(b => Assert.Single(b.Servers).PeerId));
            Assert.Equal([new SwarmModelInfo(Model, 4, 2)], await discovery.GetModelsAsync(ct).WaitAsync(Bound, ct));
            Assert.All(network.Nodes, n => Assert.Null(n.Routing.Find(client.Id)));
        }
    }

    [Fact]
    public void A_client_request_with_an_empty_sender_address_round_trips_through_the_codec()
    {
        var identity = Identities[3];
        var request = new DhtMessage(DhtMessageType.FindNode, 42, new DhtSender(identity.NodeId, identity.PublicKey, default)) { Target = identity.NodeId };
        var frame = DhtTestKit.Frame(request);
        var decoded = DhtMessageCodec.Decode(frame.AsSpan(4));
        Assert.True(decoded.Sender.Address.IsEmpty);
        Assert.Equal(identity.NodeId, decoded.Sender.Id);

        // Contacts still need an address: a NODES answer with an empty contact address is malformed.
        var nodes = new DhtMessage(DhtMessageType.Nodes, 43, new DhtSender(identity.NodeId, identity.PublicKey, PeerAddress.Parse("mem://a")))
        {
            Contacts = [new DhtContact(Identities[4].NodeId, PeerAddress.Parse("mem://b"))],
        };
        var good = DhtTestKit.Frame(nodes);
        var text = Encoding.UTF8.GetBytes("mem://b");
        var at = good.AsSpan().LastIndexOf(text);
        var bad = good[..(at - 2)].Concat(new byte[] { 0, 0 }).ToArray();
        BitConverter.TryWriteBytes(bad.AsSpan(0, 4), bad.Length - 4);
        var error = Assert.Throws<DhtFormatException>(() => DhtMessageCodec.Decode(bad.AsSpan(4)));
        Assert.Contains("contact 0 address", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bootstrap_address_with_a_peer_id_is_accepted_only_from_the_node_with_that_id()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        await network.BuildAsync(5, new Random(3), ct);
        var a = network.Nodes[0];
        var b = network.Nodes[1];

        var honest = await network.AddAsync(null, ct);
        var joined = await honest.JoinAsync([a.LocalAddress.WithPeerId(a.Id.ToString())], ct).WaitAsync(Bound, ct);
        Assert.Equal(1, joined.Answered);
        Assert.Equal(a.Id, Assert.Single(joined.Peers).Id);
        Assert.Equal(a.LocalAddress, honest.Routing.Find(a.Id)?.Address);
        Assert.True(honest.Routing.Count >= 5);

        // The node at a's address is not b: refused with the reason, not added as b, and the count tells nobody answered.
        // (Having been contacted, a verifies wary's address with a PING of its own, which proves a — as a, at its own
        // address — to wary; so wary may come to know a and, through it, others, but never b at a's address.)
        var wary = await network.AddAsync(null, ct);
        var impostor = a.LocalAddress.WithPeerId(b.Id.ToString());
        Assert.Equal(0, await wary.BootstrapAsync([impostor], ct).WaitAsync(Bound, ct));
        Assert.NotEqual(a.LocalAddress, wary.Routing.Find(b.Id)?.Address);
        var refused = await wary.JoinAsync([impostor, a.LocalAddress.WithPeerId("not-a-node-id"), PeerAddress.Parse("mem://nobody-here")], ct).WaitAsync(Bound, ct);
        Assert.Equal(0, refused.Answered);
        Assert.Equal(3, refused.Failures.Count);
        Assert.Contains($"answered as node {a.Id}, not the expected {b.Id}", refused.Peers[0].Failure, StringComparison.Ordinal);
        Assert.Null(refused.Peers[0].Id);
        Assert.Contains("is not a DHT node id", refused.Peers[1].Failure, StringComparison.Ordinal);
        Assert.Contains("refused", refused.Peers[2].Failure, StringComparison.Ordinal);
        Assert.Contains(impostor.ToString(), refused.ToString(), StringComparison.Ordinal);
        await DhtTestNetwork.QuiesceAsync(network.Nodes, ct);
        Assert.NotEqual(a.LocalAddress, wary.Routing.Find(b.Id)?.Address);
        Assert.All(wary.Routing.GetAll(), c => Assert.Equal(network.Nodes.Single(n => n.Id == c.Id).LocalAddress, c.Address));

        // A list mixing a good and a bad address counts the good one only.
        var mixed = await network.AddAsync(null, ct);
        Assert.Equal(1, await mixed.BootstrapAsync([impostor, b.LocalAddress.WithPeerId(b.Id.ToString())], ct).WaitAsync(Bound, ct));
        Assert.NotNull(mixed.Routing.Find(b.Id));

        // An impostor at another address that claims b's id does not evict the real b from the table.
        Assert.Equal(0, await mixed.BootstrapAsync([impostor], ct).WaitAsync(Bound, ct));
        Assert.Equal(b.Contact, mixed.Routing.Find(b.Id));
    }

    [Fact]
    public async Task A_peer_lost_from_the_table_is_pinged_again_by_the_refresh_and_forgotten_after_the_retention()
    {
        var ct = TestContext.Current.CancellationToken;
        var time = new ManualTimeProvider(Start);
        var memory = new MemoryTransport();
        var cut = new NetworkShapingOptions();
        var reverseCut = new NetworkShapingOptions();
        // Timers far off: the test runs the refresh itself, and no background work races with its steps.
        var options = new DhtNodeOptions { LostPeerRetention = TimeSpan.FromHours(3), RefreshInterval = TimeSpan.FromDays(30), RepublishInterval = TimeSpan.FromDays(30) };
        var hub = new DhtNode(DhtTestNetwork.Identity(600), options, time);
        var watcher = new DhtNode(DhtTestNetwork.Identity(601), options, time);
        var peer = new DhtNode(DhtTestNetwork.Identity(602), options, time);
        await using (hub)
        await using (watcher)
        await using (peer)
        {
            await hub.StartAsync(memory, PeerAddress.Parse("mem://lost-hub"), ct).WaitAsync(Bound, ct);
            await peer.StartAsync(memory.WithShaping(reverseCut), PeerAddress.Parse("mem://lost-peer"), ct).WaitAsync(Bound, ct);
            await watcher.StartAsync(memory.WithShaping(cut), PeerAddress.Parse("mem://lost-watcher"), ct).WaitAsync(Bound, ct);
            Assert.Equal(1, await peer.BootstrapAsync([hub.LocalAddress], ct).WaitAsync(Bound, ct));
            Assert.Equal(1, await watcher.BootstrapAsync([hub.LocalAddress], ct).WaitAsync(Bound, ct));
            await DhtTestNetwork.QuiesceAsync([hub, watcher, peer], ct);
            Assert.NotNull(watcher.Routing.Find(peer.Id));

            // The peer becomes unreachable from the watcher: a lookup fails on it, it leaves the table for the lost peers.
            cut.RefusedAddresses.Add(peer.LocalAddress);
            reverseCut.RefusedAddresses.Add(watcher.LocalAddress);
            await watcher.FindNodeAsync(peer.Id, ct).WaitAsync(Bound, ct);
            Assert.Null(watcher.Routing.Find(peer.Id));
            Assert.Equal(peer.Contact, Assert.Single(watcher.LostPeers));

            // While it stays unreachable the refresh keeps it lost; once reachable, the refresh brings it back.
            time.Advance(TimeSpan.FromHours(1));
            await watcher.RefreshAsync(ct).WaitAsync(Bound, ct);
            Assert.Single(watcher.LostPeers);
            cut.RefusedAddresses.Clear();
            reverseCut.RefusedAddresses.Clear();
            await watcher.RefreshAsync(ct).WaitAsync(Bound, ct);
            Assert.Equal(peer.Contact, watcher.Routing.Find(peer.Id));
            Assert.Empty(watcher.LostPeers);

            // Lost again and silent beyond the retention: forgotten.
            cut.RefusedAddresses.Add(peer.LocalAddress);
            reverseCut.RefusedAddresses.Add(watcher.LocalAddress);
            await watcher.FindNodeAsync(peer.Id, ct).WaitAsync(Bound, ct);
            Assert.Single(watcher.LostPeers);
            time.Advance(TimeSpan.FromHours(4));
            await watcher.RefreshAsync(ct).WaitAsync(Bound, ct);
            Assert.Empty(watcher.LostPeers);
            Assert.Null(watcher.Routing.Find(peer.Id));
        }
    }

    [Fact]
    public async Task Two_halves_of_a_partitioned_swarm_reconcile_after_healing()
    {
        var ct = TestContext.Current.CancellationToken;
        var random = new Random(2024);
        var time = new ManualTimeProvider(Start);
        var memory = new MemoryTransport();
        var cuts = new[] { new NetworkShapingOptions(), new NetworkShapingOptions() };
        var transports = cuts.Select(c => memory.WithShaping(c)).ToArray();
        var options = new DhtNodeOptions { K = 8 };
        var nodes = new List<DhtNode>();
        try
        {
            // One swarm of 40 nodes, each joined through a random earlier node, alternately in half 0 and half 1.
            for (var i = 0; i < 40; i++)
            {
                var node = new DhtNode(DhtTestNetwork.Identity(700 + i), options, time);
                nodes.Add(node);
                await node.StartAsync(transports[i % 2], PeerAddress.Parse($"mem://heal-{i}"), ct).WaitAsync(Bound, ct);
                if (i > 0)
                {
                    Assert.Equal(1, await node.BootstrapAsync([nodes[random.Next(i)].LocalAddress], ct).WaitAsync(Bound, ct));
                }
            }

            int Half(DhtNode n) => nodes.IndexOf(n) % 2;
            var halves = new[] { nodes.Where(n => Half(n) == 0).ToArray(), nodes.Where(n => Half(n) == 1).ToArray() };
            bool Crosses(DhtNode n, DhtContact c) => halves[1 - Half(n)].Any(o => o.Id == c.Id);

            // The cut: each half refuses connections to the other. Lookups then find every contact across the cut
            // failed, until no routing table holds one (as the refresh would, given time).
            foreach (var n in halves[0])
            {
                cuts[1].RefusedAddresses.Add(n.LocalAddress);
            }

            foreach (var n in halves[1])
            {
                cuts[0].RefusedAddresses.Add(n.LocalAddress);
            }

            var deadline = DateTime.UtcNow + Bound;
            while (nodes.Any(n => n.Routing.GetAll().Any(c => Crosses(n, c))))
            {
                Assert.True(DateTime.UtcNow < deadline, "The halves never forgot each other.");
                foreach (var node in nodes)
                {
                    foreach (var contact in node.Routing.GetAll().Where(c => Crosses(node, c)))
                    {
                        await node.FindNodeAsync(contact.Id, ct).WaitAsync(Bound, ct);
                    }
                }
            }

            // Each half stores its own keys; they are not found across the cut.
            var expires = time.GetUtcNow().AddHours(3);
            var keys = new List<(string Key, int Half)>();
            for (var i = 0; i < 40; i++)
            {
                var half = i % 2;
                var publisher = halves[half][random.Next(halves[half].Length)];
                var key = $"split-{i}";
                keys.Add((key, half));
                var stored = await publisher.StoreAsync(Signed(publisher.Identity, key, ValueOf(key), expires), ct).WaitAsync(Bound, ct);
                Assert.Equal(options.K, stored.AcceptedCount);
            }

            foreach (var (key, half) in keys.Take(6))
            {
                Assert.True((await halves[half][0].GetAsync(key, ct).WaitAsync(Bound, ct)).Found);
                Assert.False((await halves[1 - half][0].GetAsync(key, ct).WaitAsync(Bound, ct)).Found);
            }

            // Heal, then let the periodic work run: the refresh pings lost and initial peers across the old cut and
            // looks up its buckets again; the republication re-stores each record at its k closest nodes of the whole swarm.
            cuts[0].RefusedAddresses.Clear();
            cuts[1].RefusedAddresses.Clear();
            time.Advance(options.RefreshInterval);
            foreach (var node in nodes)
            {
                await node.RefreshAsync(ct).WaitAsync(Bound, ct);
            }

            foreach (var node in nodes)
            {
                await node.RepublishAsync(ct).WaitAsync(Bound, ct);
            }

            Assert.All(nodes, n => Assert.Contains(n.Routing.GetAll(), c => Crosses(n, c)));
            foreach (var (key, _) in keys)
            {
                foreach (var half in halves)
                {
                    foreach (var reader in half.OrderBy(_ => random.Next()).Take(3))
                    {
                        var result = await reader.GetAsync(key, ct).WaitAsync(Bound, ct);
                        Assert.True(result.Found, $"Key {key} is not found from node {reader.LocalAddress} after healing.");
                        Assert.Equal(ValueOf(key), Assert.Single(result.Records).Value.ToArray());
                    }
                }

                // And it lives at its k closest nodes of the healed swarm, both halves' among them.
                var keyId = NodeId.FromKey(key);
                var holders = nodes.OrderBy(n => n.Id ^ keyId).Take(options.K).Count(n => n.Storage.Get(key).Count == 1);
                Assert.True(holders >= options.K - 1, $"Key {key} is held by {holders} of its {options.K} closest nodes after healing.");
            }
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync().AsTask().WaitAsync(Bound, CancellationToken.None);
            }
        }
    }
}
