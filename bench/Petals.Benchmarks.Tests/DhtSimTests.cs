namespace Petals.Benchmarks.Tests;

public sealed class DhtSimTests
{
    [Fact]
    public async Task A_50_node_simulation_without_latency_finds_everything_within_the_hop_bound()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = DhtSimOptions.Parse(["--nodes", "50", "--latency-ms", "0", "--lookups", "40", "--records", "10", "--seed", "7", "--output", "json"]);
        var result = await DhtSim.RunAsync(options, null, ct).WaitAsync(TimeSpan.FromMinutes(3), ct);

        Assert.Equal(DhtSimJoin.Full, options.EffectiveJoin);
        Assert.Equal(10, result.StoredRecords);
        Assert.Equal(20, result.MeanReplicas);
        Assert.True(result.MeanRoutingTableSize >= 20, $"mean routing table {result.MeanRoutingTableSize}");
        Assert.Equal(20, result.Get.Count);
        Assert.Equal(20, result.FindNode.Count);
        Assert.Equal(40, result.All.Count);
        Assert.Equal(1.0, result.All.SuccessRate);
        Assert.InRange(result.All.Hops.Max, 1, Math.Ceiling(2 * Math.Log2(50)));
        Assert.InRange(result.All.Hops.Median, 1, result.All.Hops.Max);
        Assert.True(result.All.MeanMessages >= 20, $"{result.All.MeanMessages} messages per lookup (a lookup asks at least the k = 20 closest)");
        Assert.True(result.All.LatencyMs.P99 >= result.All.LatencyMs.Median);
        Assert.True(result.PeakRssBytes > 0);
        Assert.Contains("\"nodes\":50", result.ToJson(), StringComparison.Ordinal);
        Assert.Contains("find-node", result.ToText(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Latency_is_added_to_every_message_of_a_lookup()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = DhtSimOptions.Parse(["--nodes", "30", "--latency-ms", "20", "--lookups", "6", "--records", "2"]);
        var result = await DhtSim.RunAsync(options, null, ct).WaitAsync(TimeSpan.FromMinutes(3), ct);

        // A lookup needs at least one request/answer round trip of 2 x 20 ms; with k = 20 of 29 nodes and alpha = 3, several.
        Assert.True(result.All.LatencyMs.Median >= 40, $"median lookup latency {result.All.LatencyMs.Median} ms");
        Assert.Equal(1.0, result.All.SuccessRate);
    }

    [Theory]
    [InlineData("--nodes", "1")]
    [InlineData("--nodes", "many")]
    [InlineData("--latency-ms", "-1")]
    [InlineData("--join", "fast")]
    [InlineData("--output", "xml")]
    [InlineData("--bogus", "1")]
    [InlineData("--lookups")]
    public void Bad_options_are_refused_with_their_name(params string[] args)
    {
        var error = Assert.Throws<ArgumentException>(() => DhtSimOptions.Parse(args));
        Assert.Contains(args[0], error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_default_to_the_issue_settings_and_large_networks_join_with_a_self_lookup()
    {
        var o = DhtSimOptions.Parse(["--nodes", "10000"]);
        Assert.Equal(25, o.LatencyMs);
        Assert.Equal(500, o.Lookups);
        Assert.Equal(1, o.Seed);
        Assert.Equal(DhtSimJoin.SelfLookup, o.EffectiveJoin);
        Assert.Equal(DhtSimJoin.Full, DhtSimOptions.Parse(["--nodes", "10000", "--join", "full"]).EffectiveJoin);
    }

    [Fact]
    public void Percentiles_are_nearest_rank()
    {
        var values = Enumerable.Range(1, 100).Select(i => (double)i).ToArray();
        Assert.Equal(50, DhtSimStats.Percentile(values, 0.5));
        Assert.Equal(99, DhtSimStats.Percentile(values, 0.99));
        var stats = DhtSimStats.Of(values);
        Assert.Equal(100, stats.Max);
        Assert.Equal(50.5, stats.Mean);
    }
}
