using Petals.Client;
using Petals.Models;
using Petals.Server;

namespace Petals.Tests.Server;

/// <summary>
/// Timeouts longer than a .NET timer takes (about 49.7 days) are refused when the options are validated; they used to be
/// accepted and then fail every connection (server) or every call (client) at the first timer they armed.
/// </summary>
public sealed class TimeoutOptionsTests
{
    public static TheoryData<string> ServerTimeouts => [nameof(BlockServerOptions.SessionIdleTimeout), nameof(BlockServerOptions.CacheWaitTimeout)];

    public static TheoryData<string> ClientTimeouts => [nameof(RemoteSequenceOptions.ConnectTimeout), nameof(RemoteSequenceOptions.RequestTimeout)];

    [Theory]
    [MemberData(nameof(ServerTimeouts))]
    public void A_server_timeout_beyond_what_a_timer_takes_is_refused_naming_it(string name)
    {
        var options = new BlockServerOptions { Blocks = new BlockRange(0, 1), ModelId = "m" };
        options.Validate();
        typeof(BlockServerOptions).GetProperty(name)!.SetValue(options, TimeSpan.FromDays(60));
        var error = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(name, error.ParamName);
        Assert.Contains("49.7 days", error.Message, StringComparison.Ordinal);

        typeof(BlockServerOptions).GetProperty(name)!.SetValue(options, TimeSpan.FromDays(49));
        options.Validate();
    }

    [Theory]
    [MemberData(nameof(ClientTimeouts))]
    public void A_client_timeout_beyond_what_a_timer_takes_is_refused_naming_it(string name)
    {
        var options = new RemoteSequenceOptions();
        options.Validate();
        typeof(RemoteSequenceOptions).GetProperty(name)!.SetValue(options, TimeSpan.MaxValue);
        var error = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(name, error.ParamName);
        Assert.Contains("49.7 days", error.Message, StringComparison.Ordinal);

        typeof(RemoteSequenceOptions).GetProperty(name)!.SetValue(options, TimeSpan.FromDays(49));
        options.Validate();
    }
}
