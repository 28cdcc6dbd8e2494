namespace Petals.Discovery.Tests.Network;

/// <summary>What a join costs: a network smaller than k is learned with one self lookup, a larger one gets its buckets refreshed.</summary>
public sealed class JoinCostTests
{
    private static readonly TimeSpan Bound = DhtTestNetwork.Bound;

    [Fact]
    public async Task Joining_a_network_smaller_than_k_skips_the_bucket_refresh_yet_learns_every_node()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        await network.BuildAsync(6, new Random(3), ct);
        var before = network.Nodes.Sum(n => n.RequestsServed);
        var joiner = await network.AddAsync(network.Nodes[0], ct);
        var served = network.Nodes.Sum(n => n.RequestsServed) - before;

        // One ping and one self lookup asking each of the 6 nodes once (7 requests), plus the PINGs that verify the
        // joiner's address at each node it asked and, where a node's PING reached the joiner first, the joiner's PING
        // back (at most 2 × 6 more); refreshing the buckets as well costs over 30 here.
        Assert.InRange(served, 2, 20);
        Assert.Equal(network.Nodes.Take(6).Select(n => n.Id).Order(), joiner.Routing.GetAll().Select(c => c.Id).Order());
    }

    [Fact]
    public async Task Joining_a_network_of_k_or_more_nodes_refreshes_the_buckets()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var network = new DhtTestNetwork();
        await network.BuildAsync(30, new Random(5), ct);
        var before = network.Nodes.Sum(n => n.RequestsServed);
        var joiner = await network.AddAsync(network.Nodes[0], ct);
        var served = network.Nodes.Sum(n => n.RequestsServed) - before;
        Assert.True(served > 60, $"only {served} requests: the buckets were not refreshed");
        Assert.Equal(30, joiner.Routing.Count);
    }
}
