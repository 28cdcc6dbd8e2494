using System.Collections.Concurrent;
using System.Diagnostics;
using Petals.Transport;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Network;

/// <summary>The flood, at swarm scale: throwaway identities storing many records fast while a legitimate swarm announces and looks up.</summary>
public sealed class DhtFloodTests
{
    private static readonly TimeSpan Bound = DhtTestNetwork.Bound;

    [Fact]
    public async Task A_legitimate_swarm_keeps_finding_a_live_announcement_during_a_flood_from_cheap_identities()
    {
        var ct = TestContext.Current.CancellationToken;
        var output = TestContext.Current.TestOutputHelper;
        var probe = Signed(Identities[0], "flood.0000", new byte[32], Start.AddHours(1));

        // Room for about 200 records per node, so the flood fills every node's storage many times over.
        var options = new DhtNodeOptions { Storage = new RecordStorageOptions { MaxBytes = 200 * probe.StorageSize } };
        await using var network = new DhtTestNetwork(options);
        await network.BuildAsync(8, new Random(12), ct);
        var server = network.Nodes[1];
        var reader = network.Nodes[5];

        // A live server: announces, then re-announces every minute twice (3-minute records), established at every holder.
        for (var round = 0; round < 3; round++)
        {
            if (round > 0)
            {
                network.Time.Advance(TimeSpan.FromMinutes(1));
            }

            var store = await server.StoreAsync(Signed(server.Identity, "llama.0", [1, 2, 3], network.Time.GetUtcNow().AddMinutes(3)), ct).WaitAsync(Bound, ct);
            Assert.Equal(8, store.AcceptedCount);
        }

        Assert.All(network.Nodes, n => Assert.True(n.Storage.IsEstablished(server.Id), $"{n} does not count the server as established"));

        // The flood: 8 throwaway identities (puzzle solved at the network's difficulty) each offer 512 records in STOREs
        // of 64 to every node, all at once.
        const int Flooders = 8, RecordsEach = 512, PerStore = 64;
        var flooders = Enumerable.Range(0, Flooders).Select(_ => PeerIdentity.Generate()).ToArray();
        var now = network.Time.GetUtcNow();
        var floodRecords = flooders.Select(f => Enumerable.Range(0, RecordsEach).Select(i => Signed(f, $"flood.{i:D4}", new byte[32], now.AddHours(1))).ToArray()).ToArray();
        long accepted = 0, rateLimited = 0, refusedByStorage = 0, otherErrors = 0;
        var lookups = new ConcurrentBag<bool>();
        using var flooding = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var clock = Stopwatch.StartNew();
        var flood = Task.WhenAll(flooders.Select((f, fi) => Task.Run(
            async () =>
            {
                var sender = DhtSender.For(f, default, network.Options.PuzzleDifficulty);
                ulong requestId = 0;
                foreach (var node in network.Nodes)
                {
                    for (var at = 0; at < RecordsEach; at += PerStore)
                    {
                        var request = new DhtMessage(DhtMessageType.Store, ++requestId, sender) { Records = floodRecords[fi][at..(at + PerStore)] };
                        var answer = await DhtNodeTests.ExchangeAsync(network, node.LocalAddress, Frame(request, now, f, puzzleNonce: sender.PuzzleNonce), ct);
                        if (answer.Type == DhtMessageType.Error)
                        {
                            Interlocked.Add(ref answer.ErrorCode == DhtErrorCode.RateLimited ? ref rateLimited : ref otherErrors, PerStore);
                            continue;
                        }

                        Interlocked.Add(ref accepted, answer.StoreResults.Count(r => r.IsAccepted));
                        Interlocked.Add(ref refusedByStorage, answer.StoreResults.Count(r => !r.IsAccepted));
                    }
                }
            },
            ct)));

        // Meanwhile the swarm works: every node looks the announcement up, and a fresh server announces another block.
        var fresh = network.Nodes[2];
        var swarm = Task.Run(
            async () =>
            {
                var freshStore = await fresh.StoreAsync(Signed(fresh.Identity, "llama.1", [4], now.AddMinutes(3)), ct).WaitAsync(Bound, ct);
                Assert.True(freshStore.AcceptedCount > 0, "The fresh server's announcement was stored nowhere.");
                do
                {
                    foreach (var node in network.Nodes)
                    {
                        var found = await node.GetAsync("llama.0", ct).WaitAsync(Bound, ct);
                        lookups.Add(found.Records.Any(r => r.SubKey == server.Id));
                    }
                }
                while (!flood.IsCompleted);
            },
            ct);
        await flood.WaitAsync(TimeSpan.FromMinutes(3), ct);
        var floodTime = clock.Elapsed;
        await swarm.WaitAsync(Bound, ct);

        var offered = (long)Flooders * RecordsEach * network.Nodes.Count;
        output?.WriteLine($"flood: {offered} records offered by {Flooders} identities to {network.Nodes.Count} nodes in {floodTime.TotalSeconds:F1} s: {accepted} stored, {rateLimited} refused RateLimited, {refusedByStorage} refused by storage, {otherErrors} other errors; {lookups.Count} lookups during the flood, {lookups.Count(x => x)} found the live announcement");
        Assert.Equal(offered, accepted + rateLimited + refusedByStorage);
        Assert.Equal(0, otherErrors);

        // Rate-limited: each identity stores at most its record burst at each node.
        Assert.True(accepted + refusedByStorage <= (long)Flooders * network.Nodes.Count * options.SenderRecordBurst, $"{accepted + refusedByStorage} records got past the rate limit");
        Assert.True(rateLimited >= offered / 2, $"only {rateLimited} of {offered} records were rate-limited");
        Assert.Equal(rateLimited / PerStore, network.Nodes.Sum(n => n.RequestsRateLimited));

        // Every lookup during the flood found the live announcement, every node still holds it, and the fresh one is found.
        Assert.NotEmpty(lookups);
        Assert.All(lookups, Assert.True);
        Assert.All(network.Nodes, n => Assert.NotNull(n.Storage.Get("llama.0", server.Id)));
        Assert.Contains((await reader.GetAsync("llama.1", ct).WaitAsync(Bound, ct)).Records, r => r.SubKey == fresh.Id);
        Assert.All(network.Nodes, n => Assert.True(n.Storage.ByteCount <= options.Storage.MaxBytes));
    }
}
