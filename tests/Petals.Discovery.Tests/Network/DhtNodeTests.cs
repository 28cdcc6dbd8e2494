using System.Text;
using Petals.Transport;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Network;

/// <summary>DhtNode over an in-memory network: lookups, store/get, churn with republication, and hostile peers.</summary>
public sealed class DhtNodeTests
{
    private static readonly TimeSpan Bound = DhtTestNetwork.Bound;

    private static int HopBound(int nodes) => (int)Math.Ceiling(2 * Math.Log2(nodes));

    private static byte[] ValueOf(string key) => Encoding.UTF8.GetBytes("value of " + key);

    [Fact]
    public async Task In_a_100_node_network_every_node_finds_others_and_every_key_is_found_within_the_hop_bound()
    {
        var ct = TestContext.Current.CancellationToken;
        var random = new Random(100);
        await using var network = new DhtTestNetwork();
        await network.BuildAsync(100, random, ct);
        var nodes = network.Nodes;
        var maxHops = 0;
        for (var i = 0; i < nodes.Count; i++)
        {
            var target = nodes[(i + 1 + random.Next(nodes.Count - 1)) % nodes.Count];
            var lookup = await nodes[i].FindNodeAsync(target.Id, ct).WaitAsync(Bound, ct);
            Assert.NotEmpty(lookup.Closest);
            Assert.Equal(target.Id, lookup.Closest[0].Id);
            Assert.Equal(target.LocalAddress, lookup.Closest[0].Address);
            Assert.Equal(20, lookup.Closest.Count);
            Assert.True(lookup.MessagesSent >= 20);
            maxHops = Math.Max(maxHops, lookup.Hops);
        }

        var keys = Enumerable.Range(0, 100).Select(i => $"model-{i}.block").ToArray();
        foreach (var key in keys)
        {
            var publisher = nodes[random.Next(nodes.Count)];
            var stored = await publisher.StoreAsync(Signed(publisher.Identity, key, ValueOf(key), network.Time.GetUtcNow().AddHours(1)), ct).WaitAsync(Bound, ct);
            Assert.Equal(20, stored.AcceptedCount);
        }

        foreach (var key in keys)
        {
            var result = await nodes[random.Next(nodes.Count)].GetAsync(key, ct).WaitAsync(Bound, ct);
            var record = Assert.Single(result.Records);
            Assert.Equal(key, record.Key);
            Assert.Equal(ValueOf(key), record.Value.ToArray());
            maxHops = Math.Max(maxHops, result.Lookup.Hops);
        }

        Assert.InRange(maxHops, 1, HopBound(nodes.Count));
    }

    [Fact]
    public async Task Sub_records_of_one_key_from_many_publishers_are_all_found()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        await network.BuildAsync(30, new Random(7), ct);
        var expires = network.Time.GetUtcNow().AddHours(1);
        foreach (var node in network.Nodes.Take(10))
        {
            await node.StoreAsync(Signed(node.Identity, "llama.3", node.Id.ToByteArray(), expires), ct).WaitAsync(Bound, ct);
        }

        var result = await network.Nodes[^1].GetAsync("llama.3", ct).WaitAsync(Bound, ct);
        Assert.Equal(network.Nodes.Take(10).Select(n => n.Id).Order(), result.Records.Select(r => r.SubKey));
        Assert.All(result.Records, r => Assert.Equal(r.SubKey.ToByteArray(), r.Value.ToArray()));
        Assert.False((await network.Nodes[^1].GetAsync("absent", ct).WaitAsync(Bound, ct)).Found);
    }

    [Fact]
    public async Task After_three_rounds_of_30_percent_churn_keys_are_still_found_thanks_to_republication()
    {
        var ct = TestContext.Current.CancellationToken;
        var random = new Random(30);

        // k = 6 makes churn bite: a key's replicas are few enough that losing 30% of the nodes loses some of them.
        await using var network = new DhtTestNetwork(new DhtNodeOptions { K = 6, RepublishInterval = TimeSpan.FromMinutes(20) });
        await network.BuildAsync(60, random, ct);
        var publishers = network.Nodes.Take(10).ToArray();
        var keys = Enumerable.Range(0, 100).Select(i => $"churn-{i}").ToArray();
        var expires = network.Time.GetUtcNow().AddHours(2);
        for (var i = 0; i < keys.Length; i++)
        {
            var publisher = publishers[i % publishers.Length];
            await publisher.StoreAsync(Signed(publisher.Identity, keys[i], ValueOf(keys[i]), expires), ct).WaitAsync(Bound, ct);
        }

        // Three rounds of churn: stop 30% of the nodes (never the publishers, which must stay up to republish), let as
        // many new ones join, and republish. Without republication about one key in ten loses all its replicas here.
        var live = network.Running.ToList();
        var deadline = DateTime.UtcNow + Bound;
        for (var round = 0; round < 3; round++)
        {
            var victims = live.Except(publishers).OrderBy(_ => random.Next()).Take(live.Count * 3 / 10).ToArray();
            foreach (var victim in victims)
            {
                await victim.StopAsync().WaitAsync(Bound, ct);
            }

            live = network.Running.ToList();
            for (var i = 0; i < victims.Length; i++)
            {
                live.Add(await network.AddAsync(live[random.Next(live.Count)], ct));
            }

            foreach (var publisher in publishers)
            {
                Assert.Equal(keys.Length / publishers.Length, await publisher.RepublishAsync(ct).WaitAsync(Bound, ct));
            }
        }

        var found = 0;
        foreach (var key in keys)
        {
            var reader = live[random.Next(live.Count)];
            var result = await reader.GetAsync(key, ct).WaitAsync(Bound, ct);
            if (result.Records.Any(r => r.Key == key && r.Value.Span.SequenceEqual(ValueOf(key))))
            {
                found++;
            }

            Assert.InRange(result.Lookup.Hops, 0, HopBound(live.Count));
        }

        Assert.True(found >= 99, $"{found} of {keys.Length} keys found after churn.");
        Assert.True(DateTime.UtcNow < deadline);

        // Republication put the keys back at (nearly all of) their k closest live nodes, newcomers included, as a global
        // view tells. Lookups in a churned table with k = 6 occasionally miss a node, so at least k - 2 holders for 95%
        // of the keys is asked. Without republication this fails by far: about two thirds of the live nodes are
        // newcomers that hold nothing, and fewer than one key in four still has k - 2 holders (18 of 100 in a trial run).
        var wellPlaced = keys.Count(key =>
        {
            var keyId = NodeId.FromKey(key);
            return live.OrderBy(n => n.Id ^ keyId).Take(network.Options.K).Count(n => n.Storage.Get(key).Count == 1) >= network.Options.K - 2;
        });
        Assert.True(wellPlaced >= 95, $"{wellPlaced} of {keys.Length} keys are held by at least {network.Options.K - 2} of their {network.Options.K} closest live nodes.");

        Assert.Contains(network.Nodes.Skip(60), n => n.Storage.RecordCount > 0);
    }

    [Fact]
    public async Task The_republication_timer_stores_own_records_at_nodes_that_joined_later()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork(new DhtNodeOptions { K = 3, RepublishInterval = TimeSpan.FromMinutes(10) });
        await network.BuildAsync(6, new Random(5), ct);
        var publisher = network.Nodes[0];
        const string Key = "timer-key";
        await publisher.StoreAsync(Signed(publisher.Identity, Key, [1], network.Time.GetUtcNow().AddHours(1)), ct).WaitAsync(Bound, ct);

        // Join nodes until one of them is among the 3 closest to the key, so that republication must reach it.
        var keyId = NodeId.FromKey(Key);
        DhtNode? newcomer = null;
        for (var i = 0; i < 40 && newcomer is null; i++)
        {
            var node = await network.AddAsync(network.Nodes[0], ct);
            var closest = network.Running.OrderBy(n => n.Id ^ keyId).Take(3);
            if (closest.Contains(node) && node.Storage.RecordCount == 0)
            {
                newcomer = node;
            }
        }

        Assert.NotNull(newcomer);
        network.Time.Advance(TimeSpan.FromMinutes(10));
        var deadline = DateTime.UtcNow + Bound;
        while (newcomer.Storage.Get(Key).Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "The republication timer never stored the record at the newcomer.");
            await Task.Delay(20, ct);
        }
    }

    [Fact]
    public async Task Forged_expired_oversized_and_foreign_records_are_refused_by_the_receiver_with_the_reason()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var target = await network.AddAsync(null, ct);
        var evil = Identities[0];
        var now = network.Time.GetUtcNow();
        var valid = Signed(evil, "k", [1, 2, 3], now.AddMinutes(30));
        var signature = valid.Signature.ToArray();
        signature[5] ^= 1;
        var records = new[]
        {
            valid.WithSignature(valid.PublicKey, signature),
            Signed(evil, "k", [1], now.AddMinutes(-1)),
            Signed(evil, "k", new byte[RecordLimits.Default.MaxValueBytes + 1], now.AddMinutes(30)),
            new DhtRecord("k", Identities[1].NodeId, valid.Value, valid.ExpiresAt, valid.PublicKey, valid.Signature),
            Signed(evil, "k", [1], now.AddHours(7)),
            new DhtRecord(new string('x', RecordLimits.Default.MaxKeyBytes + 1), evil.NodeId, new byte[1], now.AddMinutes(5), evil.PublicKey, signature),
            valid,
        };
        var request = new DhtMessage(DhtMessageType.Store, 99, new DhtSender(evil.NodeId, evil.PublicKey, PeerAddress.Parse("mem://evil")))
        {
            Records = records,
        };
        var response = await ExchangeAsync(network, target.LocalAddress, DhtTestKit.Frame(request), ct);
        Assert.Equal(DhtMessageType.StoreResult, response.Type);
        Assert.Equal(99UL, response.RequestId);
        Assert.Equal(target.Id, response.Sender.Id);
        Assert.Equal(
            [
                RecordRejectionReason.ForgedSignature, RecordRejectionReason.Expired, RecordRejectionReason.ValueTooLarge,
                RecordRejectionReason.SubKeyMismatch, RecordRejectionReason.ExpirationTooFar, RecordRejectionReason.KeyTooLarge,
                RecordRejectionReason.None,
            ],
            response.StoreResults.Select(r => r.Reason));
        Assert.All(response.StoreResults.Where(r => !r.IsAccepted), r => Assert.False(string.IsNullOrEmpty(r.Message)));
        var stored = Assert.Single(target.Storage.GetAll());
        Assert.True(stored.ContentEquals(valid));

        // A replay of an older version is refused too.
        var older = Signed(evil, "k", [9], now.AddMinutes(10));
        var replay = await ExchangeAsync(network, target.LocalAddress, DhtTestKit.Frame(new DhtMessage(DhtMessageType.Store, 100, request.Sender) { Records = [older] }), ct);
        Assert.Equal(RecordRejectionReason.Replayed, Assert.Single(replay.StoreResults).Reason);
    }

    [Fact]
    public async Task A_request_whose_sender_id_is_not_the_hash_of_its_key_is_refused_and_not_remembered()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var target = await network.AddAsync(null, ct);
        var liar = new DhtSender(Identities[1].NodeId, Identities[0].PublicKey, PeerAddress.Parse("mem://liar"));
        var store = new DhtMessage(DhtMessageType.Store, 5, liar) { Records = [Signed(Identities[0], "k", [1], network.Time.GetUtcNow().AddMinutes(5))] };
        var response = await ExchangeAsync(network, target.LocalAddress, DhtTestKit.Frame(store), ct);
        Assert.Equal(DhtMessageType.Error, response.Type);
        Assert.Equal(DhtErrorCode.IdentityMismatch, response.ErrorCode);
        Assert.Equal(5UL, response.RequestId);
        Assert.Equal(0, target.Routing.Count);
        Assert.Equal(0, target.Storage.RecordCount);

        // A malformed frame gets ERROR Malformed; a response type sent as a request gets UnexpectedType.
        var garbage = DhtTestKit.Frame(new DhtMessage(DhtMessageType.Ping, 6, liar with { Id = Identities[0].NodeId }));
        garbage[5] = 42;
        Assert.Equal(DhtErrorCode.Malformed, (await ExchangeAsync(network, target.LocalAddress, garbage, ct)).ErrorCode);
        var pong = DhtTestKit.Frame(new DhtMessage(DhtMessageType.Pong, 7, liar with { Id = Identities[0].NodeId }));
        Assert.Equal(DhtErrorCode.UnexpectedType, (await ExchangeAsync(network, target.LocalAddress, pong, ct)).ErrorCode);

        // An honest ping is answered and, once its claimed address answers a PING back with its id, enters the routing table.
        var honestSender = liar with { Id = Identities[0].NodeId };
        await using var listener = await network.Transport.ListenAsync(honestSender.Address, ct);
        var answering = AnswerPingsAsync(listener, honestSender, answers: 1, ct);
        var honest = DhtTestKit.Frame(new DhtMessage(DhtMessageType.Ping, 8, honestSender));
        Assert.Equal(DhtMessageType.Pong, (await ExchangeAsync(network, target.LocalAddress, honest, ct)).Type);
        await answering.WaitAsync(Bound, ct);
        await DhtTestNetwork.QuiesceAsync([target], ct);
        Assert.Equal(PeerAddress.Parse("mem://liar"), target.Routing.Find(Identities[0].NodeId)?.Address);
    }

    [Fact]
    public async Task Values_from_a_hostile_responder_are_validated_by_the_requester()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var node = await network.AddAsync(null, ct);
        var evil = Identities[2];
        var evilSender = new DhtSender(evil.NodeId, evil.PublicKey, PeerAddress.Parse("mem://hostile"));
        await using var listener = await network.Transport.ListenAsync(evilSender.Address, ct);
        var now = network.Time.GetUtcNow();
        var good = Signed(Identities[3], "key", [7], now.AddMinutes(30));
        var forgedSignature = good.Signature.ToArray();
        forgedSignature[0] ^= 0x40;
        var answers = new[]
        {
            good,
            Signed(Identities[4], "key", [1], now.AddMinutes(-5)),
            Signed(Identities[5], "other-key", [1], now.AddMinutes(5)),
            Signed(Identities[6], "key", [1], now.AddMinutes(5)).WithSignature(good.PublicKey, forgedSignature),
        };
        var serve = Task.Run(
            async () =>
            {
                while (true)
                {
                    var stream = await listener.AcceptAsync(ct);
                    await using var _ = stream;
                    var request = await DhtMessageCodec.ReadFrameAsync(stream, ct);
                    var reply = request!.Type == DhtMessageType.FindValue
                        ? new DhtMessage(DhtMessageType.Value, request.RequestId, evilSender) { Records = answers }
                        : new DhtMessage((DhtMessageType)((byte)request.Type + 1), request.RequestId, evilSender);
                    await stream.WriteAsync(DhtTestKit.Frame(reply, boundNonce: request.Nonce.Span), ct);
                    await stream.CompleteWritesAsync(ct);
                }
            },
            ct);

        Assert.Equal(1, await node.BootstrapAsync([evilSender.Address], ct).WaitAsync(Bound, ct));
        var result = await node.GetAsync("key", ct).WaitAsync(Bound, ct);
        var record = Assert.Single(result.Records);
        Assert.True(record.ContentEquals(good));
        Assert.False(serve.IsFaulted, serve.Exception?.ToString());
    }

    [Fact]
    public async Task A_full_bucket_pings_its_oldest_member_before_evicting_it()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork(new DhtNodeOptions { K = 1 });
        var hub = await network.AddAsync(null, ct);

        // Find two more pool identities in the same bucket of the hub (bucket 159 holds half of all ids).
        var sameBucket = Enumerable.Range(1, 40).Where(i => hub.Id.BucketIndexOf(DhtTestNetwork.Identity(i).NodeId) == 159).Take(3).ToArray();
        Assert.Equal(3, sameBucket.Length);
        var nodes = new List<DhtNode>();
        foreach (var index in sameBucket)
        {
            var node = new DhtNode(DhtTestNetwork.Identity(index), network.Options, network.Time);
            network.Nodes.Add(node);
            await node.StartAsync(network.Transport, PeerAddress.Parse($"mem://bucket-{index}"), ct).WaitAsync(Bound, ct);
            nodes.Add(node);
        }

        var (oldest, alive, newcomer) = (nodes[0], nodes[1], nodes[2]);
        await oldest.BootstrapAsync([hub.LocalAddress], ct).WaitAsync(Bound, ct);
        Assert.Equal([oldest.Id], hub.Routing.GetBucket(159).Select(c => c.Id));

        // The member answers the ping: it stays and the newcomer waits as a replacement.
        await alive.BootstrapAsync([hub.LocalAddress], ct).WaitAsync(Bound, ct);
        await WaitUntilAsync(() => hub.Routing.GetReplacements(159).Any(c => c.Id == alive.Id), "the newcomer never became a replacement", ct);
        await Task.Delay(100, ct);
        Assert.Equal([oldest.Id], hub.Routing.GetBucket(159).Select(c => c.Id));

        // The member is gone: the ping fails, it is evicted and the most recent replacement takes its place.
        await oldest.StopAsync().WaitAsync(Bound, ct);
        await newcomer.BootstrapAsync([hub.LocalAddress], ct).WaitAsync(Bound, ct);
        await WaitUntilAsync(() => hub.Routing.GetBucket(159).Select(c => c.Id).SequenceEqual([newcomer.Id]), "the unresponsive member was never evicted", ct);
        Assert.Null(hub.Routing.Find(oldest.Id));
    }

    [Fact]
    public async Task Misuse_is_refused_precisely()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var idle = new DhtNode(Identities[0], null, network.Time);
        await Assert.ThrowsAsync<InvalidOperationException>(() => idle.FindNodeAsync(NodeId.Zero, ct));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DhtNode(Identities[0], new DhtNodeOptions { Alpha = 0 }));
        var node = await network.AddAsync(null, ct);
        await Assert.ThrowsAsync<InvalidOperationException>(() => node.StartAsync(network.Transport, PeerAddress.Parse("mem://again"), ct));
        var expired = Signed(node.Identity, "k", [1], network.Time.GetUtcNow().AddMinutes(-1));
        var e = await Assert.ThrowsAsync<ArgumentException>(() => node.StoreAsync(expired, ct));
        Assert.Contains("Expired", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => node.GetAsync(new string('k', 300), ct));

        // Alone, a node finds nothing but still serves its own storage.
        var fresh = Signed(node.Identity, "k", [1], network.Time.GetUtcNow().AddMinutes(5));
        var stored = await node.StoreAsync(fresh, ct).WaitAsync(Bound, ct);
        Assert.Equal(1, stored.AcceptedCount);
        Assert.Single((await node.GetAsync("k", ct).WaitAsync(Bound, ct)).Records);
        await node.StopAsync().WaitAsync(Bound, ct);
        await node.StopAsync().WaitAsync(Bound, ct);
        Assert.False(node.IsRunning);
        await Assert.ThrowsAsync<InvalidOperationException>(() => node.GetAsync("k", ct));
        await using var __ = idle;
    }

    [Fact]
    public async Task Served_requests_are_capped_and_the_rest_wait()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork(new DhtNodeOptions { MaxConcurrentRequests = 1 });
        var node = await network.AddAsync(null, ct);
        var sender = new DhtSender(Identities[0].NodeId, Identities[0].PublicKey, PeerAddress.Parse("mem://cap"));

        // A silent stream takes the only slot.
        var silent = await network.Transport.ConnectAsync(node.LocalAddress, ct);
        var waiting = ExchangeAsync(network, node.LocalAddress, DhtTestKit.Frame(new DhtMessage(DhtMessageType.Ping, 1, sender)), ct);
        await Task.Delay(200, ct);
        Assert.False(waiting.IsCompleted);

        // Ending the silent stream frees the slot and the queued request is served.
        await silent.CompleteWritesAsync(ct);
        await silent.DisposeAsync();
        Assert.Equal(DhtMessageType.Pong, (await waiting.WaitAsync(Bound, ct)).Type);
    }

    [Fact]
    public async Task A_peer_that_never_answers_times_out_on_the_injected_clock_and_is_marked_failed()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        var node = await network.AddAsync(null, ct);

        // A peer introduces itself with a valid PING and answers the PING back that verifies its address, then accepts
        // connections but never answers.
        var mute = new DhtSender(Identities[3].NodeId, Identities[3].PublicKey, PeerAddress.Parse("mem://mute"));
        await using var listener = await network.Transport.ListenAsync(mute.Address, ct);
        var verified = AnswerPingsAsync(listener, mute, answers: 1, ct);
        Assert.Equal(DhtMessageType.Pong, (await ExchangeAsync(network, node.LocalAddress, DhtTestKit.Frame(new DhtMessage(DhtMessageType.Ping, 1, mute)), ct)).Type);
        await verified.WaitAsync(Bound, ct);
        await DhtTestNetwork.QuiesceAsync([node], ct);
        Assert.NotNull(node.Routing.Find(mute.Id));
        var accepted = new System.Collections.Concurrent.ConcurrentQueue<ITransportStream>();
        var accepting = Task.Run(
            async () =>
            {
                while (!ct.IsCancellationRequested)
                {
                    accepted.Enqueue(await listener.AcceptAsync(ct));
                }
            },
            ct);

        var lookup = node.FindNodeAsync(NodeId.CreateRandom(new Random(9)), ct);
        var deadline = DateTime.UtcNow + Bound;
        while (!lookup.IsCompleted)
        {
            Assert.True(DateTime.UtcNow < deadline, "The request never timed out.");
            await Task.Delay(10, ct);
            network.Time.Advance(node.Options.RequestTimeout);
        }

        var result = await lookup;
        Assert.Empty(result.Closest);
        Assert.Equal(1, result.MessagesSent);
        Assert.Null(node.Routing.Find(mute.Id));
        foreach (var stream in accepted.ToArray())
        {
            await stream.DisposeAsync();
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, what);
            await Task.Delay(10, ct);
        }
    }

    /// <summary>Answers the next <paramref name="answers"/> requests at <paramref name="listener"/> with a signed PONG from <paramref name="sender"/>.</summary>
    internal static async Task AnswerPingsAsync(ITransportListener listener, DhtSender sender, int answers, CancellationToken ct)
    {
        for (var i = 0; i < answers; i++)
        {
            var stream = await listener.AcceptAsync(ct);
            await using var _ = stream;
            var request = await DhtMessageCodec.ReadFrameAsync(stream, ct);
            Assert.NotNull(request);
            await stream.WriteAsync(DhtTestKit.Frame(new DhtMessage(DhtMessageType.Pong, request.RequestId, sender), boundNonce: request.Nonce.Span), ct);
            await stream.CompleteWritesAsync(ct);
        }
    }

    internal static async Task<DhtMessage> ExchangeAsync(DhtTestNetwork network, PeerAddress address, byte[] frame, CancellationToken ct)
    {
        var stream = await network.Transport.ConnectAsync(address, ct);
        await using var _ = stream;
        await stream.WriteAsync(frame, ct);
        await stream.CompleteWritesAsync(ct);
        var response = await DhtMessageCodec.ReadFrameAsync(stream, ct).AsTask().WaitAsync(Bound, ct);
        Assert.NotNull(response);
        return response;
    }
}
