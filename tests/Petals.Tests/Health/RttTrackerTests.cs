using Petals.Health;

namespace Petals.Tests.Health;

/// <summary>The smoothed round-trip time: TCP's SRTT rule.</summary>
public sealed class RttTrackerTests
{
    [Fact]
    public void The_first_sample_is_taken_as_is_and_later_ones_move_the_estimate_by_the_smoothing_factor()
    {
        var tracker = new RttTracker(new PeerHealthOptions { RttSmoothing = 0.125 });
        Assert.False(tracker.TryGet("p", out _));
        Assert.Equal(TimeSpan.FromMilliseconds(100), tracker.AddSample("p", TimeSpan.FromMilliseconds(100)));
        Assert.Equal(TimeSpan.FromMilliseconds(112.5), tracker.AddSample("p", TimeSpan.FromMilliseconds(200)));
        Assert.Equal(TimeSpan.FromMilliseconds(98.4375), tracker.AddSample("p", TimeSpan.FromMilliseconds(0)));
        Assert.True(tracker.TryGet("p", out var rtt));
        Assert.Equal(TimeSpan.FromMilliseconds(98.4375), rtt);
    }

    [Fact]
    public void A_single_outlier_moves_the_estimate_little_and_a_lasting_change_is_followed()
    {
        var tracker = new RttTracker(new PeerHealthOptions());
        for (var i = 0; i < 20; i++)
        {
            tracker.AddSample("p", TimeSpan.FromMilliseconds(20));
        }

        var afterSpike = tracker.AddSample("p", TimeSpan.FromMilliseconds(1000));
        Assert.InRange(afterSpike.TotalMilliseconds, 140, 145); // 20 + (1000 - 20) / 8 = 142.5
        var settled = afterSpike;
        for (var i = 0; i < 60; i++)
        {
            settled = tracker.AddSample("p", TimeSpan.FromMilliseconds(50));
        }

        Assert.InRange(settled.TotalMilliseconds, 49.9, 50.1);
    }

    [Fact]
    public void Peers_are_tracked_apart_and_can_be_forgotten()
    {
        var tracker = new RttTracker(new PeerHealthOptions { RttSmoothing = 1 });
        tracker.AddSample("a", TimeSpan.FromMilliseconds(10));
        tracker.AddSample("b", TimeSpan.FromMilliseconds(30));
        tracker.AddSample("b", TimeSpan.FromMilliseconds(40)); // smoothing 1: the last sample only
        var snapshot = tracker.Snapshot();
        Assert.Equal(TimeSpan.FromMilliseconds(10), snapshot["a"]);
        Assert.Equal(TimeSpan.FromMilliseconds(40), snapshot["b"]);
        tracker.Forget("a");
        Assert.False(tracker.TryGet("a", out _));
        Assert.Equal(2, snapshot.Count); // the snapshot is a copy
        Assert.Equal(TimeSpan.FromMilliseconds(70), tracker.AddSample("a", TimeSpan.FromMilliseconds(70)));
    }

    [Fact]
    public void Bad_samples_are_refused()
    {
        var tracker = new RttTracker(new PeerHealthOptions());
        Assert.Throws<ArgumentOutOfRangeException>(() => tracker.AddSample("p", TimeSpan.FromMilliseconds(-1)));
        Assert.Throws<ArgumentException>(() => tracker.AddSample(string.Empty, TimeSpan.Zero));
        Assert.Equal("RttSmoothing", Assert.Throws<ArgumentOutOfRangeException>(() => new RttTracker(new PeerHealthOptions { RttSmoothing = 0 })).ParamName);
    }
}
