using Petals.Client.Routing;

namespace Petals.Tests.Client.Routing;

/// <summary>Option validation names the field at fault.</summary>
public sealed class RouterOptionsTests
{
    [Fact]
    public void The_defaults_are_valid()
    {
        new RouterOptions().Validate();
    }

    [Theory]
    [InlineData("HopOverhead")]
    [InlineData("CacheMissPenalty")]
    [InlineData("UnknownRtt")]
    [InlineData("DefaultThroughput")]
    public void An_out_of_range_value_is_refused_by_name(string field)
    {
        var options = new RouterOptions();
        switch (field)
        {
            case "HopOverhead": options.HopOverhead = TimeSpan.FromTicks(-1); break;
            case "CacheMissPenalty": options.CacheMissPenalty = TimeSpan.FromSeconds(-1); break;
            case "UnknownRtt": options.UnknownRtt = TimeSpan.FromSeconds(-1); break;
            case "DefaultThroughput": options.DefaultThroughput = double.NaN; break;
        }

        Assert.Equal(field, Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
    }

    [Fact]
    public void Peer_lists_must_be_consistent()
    {
        var both = new RouterOptions();
        both.AllowedPeers.Add("p");
        both.BlockedPeers.Add("p");
        var error = Assert.Throws<ArgumentException>(both.Validate);
        Assert.Contains("Peer 'p' is in both AllowedPeers and BlockedPeers", error.Message, StringComparison.Ordinal);

        var empty = new RouterOptions();
        empty.BlockedPeers.Add(" ");
        Assert.Equal("BlockedPeers", Assert.Throws<ArgumentException>(empty.Validate).ParamName);
    }
}
