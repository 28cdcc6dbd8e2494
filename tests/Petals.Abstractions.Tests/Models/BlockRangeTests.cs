using Petals.Models;

namespace Petals.Abstractions.Tests.Models;

public sealed class BlockRangeTests
{
    [Fact]
    public void ParsesStartAndExclusiveEnd()
    {
        var range = BlockRange.Parse("3:7");
        Assert.Equal(3, range.Start);
        Assert.Equal(7, range.End);
        Assert.Equal(4, range.Count);
        Assert.True(range.Contains(3));
        Assert.True(range.Contains(6));
        Assert.False(range.Contains(7));
        Assert.False(range.Contains(2));
        Assert.Equal("3:7", range.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("3")]
    [InlineData(":4")]
    [InlineData("4:")]
    [InlineData("4:4")]
    [InlineData("5:4")]
    [InlineData("-1:4")]
    [InlineData("a:b")]
    [InlineData("1:2:3")]
    [InlineData(" 1:2")]
    public void RejectsMalformedText(string text)
    {
        var ex = Assert.Throws<FormatException>(() => BlockRange.Parse(text));
        Assert.Contains(text, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ConstructorRejectsEmptyOrNegativeRanges()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlockRange(-1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlockRange(2, 2));
        Assert.Equal(new BlockRange(0, 5), BlockRange.Parse("0:5"));
    }
}
