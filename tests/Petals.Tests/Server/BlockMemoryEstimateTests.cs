using Petals.Formats;
using Petals.Server;
using Petals.Testing;

namespace Petals.Tests.Server;

/// <summary>The memory a span costs (weights as held, attention cache, working buffers) and byte-count parsing for <c>--memory-budget</c>.</summary>
public sealed class BlockMemoryEstimateTests
{
    [Fact]
    public void The_estimate_of_the_shared_model_counts_its_block_weights_the_offered_cache_and_the_working_buffers()
    {
        Assert.SkipUnless(TestData.SharedAvailable, TestData.MissingMessage);
        using var weights = ModelLoader.Open(TestData.Stories260KGguf);
        var c = weights.Config;
        var options = new BlockServerOptions { CacheTokens = 1000, MaxBatchTokens = 256, MaxSessionLength = 512 };
        var estimate = BlockMemoryEstimate.For(weights, options);

        // One block of stories260K: 4 attention projections and 3 MLP matrices in f32, plus two norms.
        long projections = (2L * c.HiddenSize * c.NumHeads * c.HeadDim) + (2L * c.HiddenSize * c.NumKeyValueHeads * c.HeadDim) + (3L * c.HiddenSize * c.IntermediateSize);
        Assert.Equal((projections + (2 * c.HiddenSize)) * 4, estimate.WeightBytesPerBlock);
        Assert.Equal(1000L * 2 * c.NumKeyValueHeads * c.HeadDim * 4, estimate.CacheBytesPerBlock);
        Assert.Equal((256L * ((4 * c.HiddenSize) + (3 * c.IntermediateSize)) * 4) + (c.NumHeads * 512L * 4 * 256), estimate.WorkingBytes);
        Assert.Equal(estimate.WorkingBytes + (3 * estimate.BytesPerBlock), estimate.BytesFor(3));
    }

    [Theory]
    [InlineData(999, 0)]
    [InlineData(1000, 0)]
    [InlineData(1099, 0)]
    [InlineData(1100, 1)]
    [InlineData(1399, 3)]
    [InlineData(1_000_000, 5)]
    public void Blocks_within_a_budget_count_whole_blocks_after_the_working_buffers_and_stop_at_the_model(long budget, int blocks)
    {
        var estimate = new BlockMemoryEstimate(WeightBytesPerBlock: 60, CacheBytesPerBlock: 40, WorkingBytes: 1000);
        Assert.Equal(blocks, estimate.BlocksWithin(budget, maxBlocks: 5));
    }

    [Theory]
    [InlineData("4000000000", 4_000_000_000L)]
    [InlineData("8GiB", 8L << 30)]
    [InlineData("512 MiB", 512L << 20)]
    [InlineData("1.5GB", 1_500_000_000L)]
    [InlineData("64kib", 64L << 10)]
    [InlineData("2T", 2_000_000_000_000L)]
    [InlineData("  12B ", 12L)]
    public void Byte_counts_parse_with_decimal_and_binary_units(string text, long bytes) => Assert.Equal(bytes, BlockMemoryEstimate.ParseBytes(text));

    [Theory]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("-5GiB")]
    [InlineData("5XB")]
    [InlineData("GiB")]
    [InlineData("1.2.3MB")]
    [InlineData("99999999999TiB")]
    public void Bad_byte_counts_are_refused_naming_the_text(string text)
    {
        var refused = Assert.Throws<FormatException>(() => BlockMemoryEstimate.ParseBytes(text));
        Assert.Equal($"'{text}' is not a positive byte count (e.g. 8GiB, 512MiB, 4000000000).", refused.Message);
    }

    [Fact]
    public void The_default_budget_is_half_of_the_available_memory_and_says_where_the_figure_came_from()
    {
        var (bytes, why) = BlockMemoryEstimate.DefaultBudget();
        Assert.True(bytes > 0, $"budget {bytes}");
        Assert.StartsWith("50% of ", why, StringComparison.Ordinal);
        Assert.EndsWith(OperatingSystem.IsLinux() ? "available (MemAvailable)" : "available (runtime total available memory)", why, StringComparison.Ordinal);
        Assert.Equal("1.5 GiB", BlockMemoryEstimate.FormatBytes(3L << 29));
        Assert.Equal("12 B", BlockMemoryEstimate.FormatBytes(12));
    }
}
