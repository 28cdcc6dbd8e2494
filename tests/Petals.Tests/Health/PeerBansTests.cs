using Petals.Health;
using Petals.Testing.Time;

namespace Petals.Tests.Health;

/// <summary>Bans that double on each failure up to a cap and reset on success, on a manual clock.</summary>
public sealed class PeerBansTests
{
    private static readonly PeerHealthOptions Options = new() { BanBase = TimeSpan.FromSeconds(10), BanCap = TimeSpan.FromSeconds(70) };

    [Fact]
    public void Each_failure_doubles_the_ban_up_to_the_cap()
    {
        var time = new ManualTimeProvider();
        var bans = new PeerBans(Options, time);
        var expected = new[] { 10, 20, 40, 70, 70, 70 };
        for (var i = 0; i < expected.Length; i++)
        {
            var duration = bans.RecordFailure("p");
            Assert.Equal(TimeSpan.FromSeconds(expected[i]), duration);
            Assert.Equal(i + 1, bans.Failures("p"));
            time.Advance(duration - TimeSpan.FromMilliseconds(1));
            Assert.True(bans.IsBanned("p"));
            time.Advance(TimeSpan.FromMilliseconds(1));
            Assert.False(bans.IsBanned("p")); // the ban ends, but the count stays for the next failure
        }
    }

    [Fact]
    public void A_success_lifts_the_ban_and_the_next_failure_starts_again_from_the_base()
    {
        var time = new ManualTimeProvider();
        var bans = new PeerBans(Options, time);
        bans.RecordFailure("p");
        bans.RecordFailure("p");
        Assert.True(bans.IsBanned("p"));
        bans.RecordSuccess("p");
        Assert.False(bans.IsBanned("p"));
        Assert.Equal(0, bans.Failures("p"));
        Assert.Equal(TimeSpan.FromSeconds(10), bans.RecordFailure("p"));
    }

    [Fact]
    public void The_banned_set_holds_exactly_the_peers_banned_now()
    {
        var time = new ManualTimeProvider();
        var bans = new PeerBans(Options, time);
        bans.RecordFailure("a");
        bans.RecordFailure("b");
        bans.RecordFailure("b");
        bans.RecordFailure("c");
        bans.RecordSuccess("c");
        Assert.Equal(["a", "b"], bans.Banned().Order(StringComparer.Ordinal));
        time.Advance(TimeSpan.FromSeconds(15));
        Assert.Equal(["b"], bans.Banned());
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Empty(bans.Banned());
    }

    [Fact]
    public void Many_failures_stay_at_the_cap_without_overflow()
    {
        var bans = new PeerBans(new PeerHealthOptions { BanBase = TimeSpan.FromSeconds(1), BanCap = TimeSpan.MaxValue / 2 }, new ManualTimeProvider());
        var last = TimeSpan.Zero;
        for (var i = 0; i < 200; i++)
        {
            last = bans.RecordFailure("p");
        }

        Assert.Equal(TimeSpan.MaxValue / 2, last);
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        var bans = new PeerBans(Options, new ManualTimeProvider());
        Assert.Throws<ArgumentException>(() => bans.RecordFailure(string.Empty));
        Assert.Throws<ArgumentNullException>(() => bans.RecordSuccess(null!));
        Assert.Equal("BanBase", Assert.Throws<ArgumentOutOfRangeException>(() => new PeerBans(new PeerHealthOptions { BanBase = TimeSpan.Zero }, TimeProvider.System)).ParamName);
    }
}
