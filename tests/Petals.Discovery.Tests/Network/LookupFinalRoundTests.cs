using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Discovery.Tests.Network;

/// <summary>The lookup's final round: alpha requests in flight while answers bring closer nodes, then the rest of the k closest at once.</summary>
public sealed class LookupFinalRoundTests
{
    private static readonly TimeSpan Bound = DhtTestNetwork.Bound;

    [Fact]
    public async Task Once_answers_stop_bringing_closer_nodes_the_remaining_k_closest_are_asked_at_once()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        // 30 nodes: no bucket of the requester overflows, so no eviction pings overlap the lookup's own requests.
        await network.BuildAsync(30, new Random(11), ct);

        // A requester whose every connect stays pending a moment, so requests issued together overlap visibly.
        var counting = new ConcurrencyCountingTransport(network.Transport);
        await using var requester = new DhtNode(DhtTestNetwork.Identity(500), network.Options, network.Time);
        await requester.StartAsync(counting, ct).WaitAsync(Bound, ct);
        Assert.True(await requester.BootstrapAsync([network.Nodes[0].LocalAddress], ct).WaitAsync(Bound, ct) > 0);

        counting.Reset();
        var lookup = await requester.FindNodeAsync(NodeId.CreateRandom(new Random(12)), ct).WaitAsync(Bound, ct);
        Assert.Equal(20, lookup.Closest.Count);
        Assert.True(counting.MaxConcurrent > network.Options.Alpha, $"at most {counting.MaxConcurrent} requests were in flight: no final round");
        Assert.InRange(counting.MaxConcurrent, network.Options.Alpha + 1, network.Options.K);
    }

    private sealed class ConcurrencyCountingTransport(ITransport inner) : DelegatingTransport(inner)
    {
        private int _current;
        private int _max;

        public int MaxConcurrent => Volatile.Read(ref _max);

        public void Reset() => Volatile.Write(ref _max, 0);

        public override async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
        {
            var now = Interlocked.Increment(ref _current);
            int seen;
            while (now > (seen = Volatile.Read(ref _max)) && Interlocked.CompareExchange(ref _max, now, seen) != seen)
            {
            }

            try
            {
                await Task.Delay(20, cancellationToken);
                return await InnerTransport.ConnectAsync(address, cancellationToken);
            }
            finally
            {
                Interlocked.Decrement(ref _current);
            }
        }

    }
}
