using Petals.Health;

namespace Petals.Tests.Health;

/// <summary>Option validation of the default peer-health policy names the field at fault.</summary>
public sealed class PeerHealthOptionsTests
{
    [Fact]
    public void The_defaults_are_valid()
    {
        new PeerHealthOptions().Validate();
    }

    [Theory]
    [InlineData("BanBase")]
    [InlineData("BanCap")]
    [InlineData("RttSmoothing")]
    [InlineData("MaxConcurrentPings")]
    [InlineData("PingsPerBlock")]
    [InlineData("PingTimeout")]
    public void An_out_of_range_value_is_refused_by_name(string field)
    {
        var options = new PeerHealthOptions();
        switch (field)
        {
            case "BanBase": options.BanBase = TimeSpan.Zero; break;
            case "BanCap": options.BanCap = TimeSpan.FromSeconds(1); break;
            case "RttSmoothing": options.RttSmoothing = 1.5; break;
            case "MaxConcurrentPings": options.MaxConcurrentPings = 0; break;
            case "PingsPerBlock": options.PingsPerBlock = 0; break;
            case "PingTimeout": options.PingTimeout = TimeSpan.Zero; break;
        }

        Assert.Equal(field, Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
        Assert.Equal(field, Assert.Throws<ArgumentOutOfRangeException>(() => new PeerHealthPolicy(options)).ParamName);
    }
}
