using System.Diagnostics;
using Petals.Health;
using static Petals.Health.LivenessDetector.Verdict;

namespace Petals.Tests.Health;

/// <summary>The liveness state machine on synthetic <see cref="Stopwatch"/> timestamps: a timeout of 3 s pings after 1 s of silence.</summary>
public sealed class LivenessDetectorTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    [Fact]
    public void A_server_whose_bytes_keep_coming_is_alive_however_far_apart_the_observations()
    {
        var detector = new LivenessDetector(Timeout);
        for (var k = 0; k < 10; k++)
        {
            Assert.Equal(Alive, detector.Observe(Ms(k * 10_000), waiting: true, sending: false, bytesReceived: k * 100, bytesSent: 0));
        }
    }

    [Fact]
    public void A_third_of_the_timeout_of_silence_asks_for_one_ping_and_another_only_after_bytes_moved()
    {
        var detector = new LivenessDetector(Timeout);
        Assert.Equal(Alive, Waiting(detector, Ms(0), received: 50));
        Assert.Equal(Alive, Waiting(detector, Ms(1000) - 1, received: 50));
        Assert.Equal(Ping, Waiting(detector, Ms(1000), received: 50));
        Assert.Equal(Alive, Waiting(detector, Ms(1500), received: 50));
        Assert.Equal(Alive, Waiting(detector, Ms(2400), received: 50));

        // The answer arrives: silence starts over, and so does the ping.
        Assert.Equal(Alive, Waiting(detector, Ms(2500), received: 51));
        Assert.Equal(Alive, Waiting(detector, Ms(3500) - 1, received: 51));
        Assert.Equal(Ping, Waiting(detector, Ms(3500), received: 51));
        Assert.Equal(Alive, Waiting(detector, Ms(4000), received: 51));
    }

    [Fact]
    public void The_whole_timeout_of_silence_declares_the_server_dead_pinged_or_not()
    {
        var pinged = new LivenessDetector(Timeout);
        Assert.Equal(Alive, Waiting(pinged, Ms(0), received: 7));
        Assert.Equal(Ping, Waiting(pinged, Ms(1000), received: 7));
        Assert.Equal(Alive, Waiting(pinged, Ms(3000) - 1, received: 7));
        Assert.Equal(Dead, Waiting(pinged, Ms(3000), received: 7));
        Assert.Equal(Dead, Waiting(pinged, Ms(5000), received: 7));

        // Observed only once the timeout has passed: dead, no ping first.
        var late = new LivenessDetector(Timeout);
        Assert.Equal(Alive, Waiting(late, Ms(0), received: 7));
        Assert.Equal(Dead, Waiting(late, Ms(3000), received: 7));
    }

    [Fact]
    public void Silence_counts_only_while_a_call_waits()
    {
        var detector = new LivenessDetector(Timeout);
        Assert.Equal(Alive, detector.Observe(Ms(0), waiting: false, sending: false, bytesReceived: 5, bytesSent: 5));
        Assert.Equal(Alive, detector.Observe(Ms(100_000), waiting: false, sending: false, bytesReceived: 5, bytesSent: 5));

        // A call starts waiting: silence counts from the last observation, not from the idle time before.
        Assert.Equal(Alive, Waiting(detector, Ms(100_000), received: 5, sent: 5));
        Assert.Equal(Alive, Waiting(detector, Ms(101_000) - 1, received: 5, sent: 5));
        Assert.Equal(Ping, Waiting(detector, Ms(101_000), received: 5, sent: 5));

        // The call ends and another starts: the ping and the silence start over.
        Assert.Equal(Alive, detector.Observe(Ms(102_000), waiting: false, sending: false, bytesReceived: 5, bytesSent: 5));
        Assert.Equal(Alive, Waiting(detector, Ms(103_000) - 1, received: 5, sent: 5));
        Assert.Equal(Ping, Waiting(detector, Ms(103_000), received: 5, sent: 5));
        Assert.Equal(Dead, Waiting(detector, Ms(105_000), received: 5, sent: 5));
    }

    [Fact]
    public void Bytes_sent_are_a_sign_of_life_only_while_a_request_is_being_written()
    {
        // Our own pings going out do not keep a silent server alive.
        var pinging = new LivenessDetector(Timeout);
        Assert.Equal(Alive, Waiting(pinging, Ms(0), received: 10, sent: 100));
        Assert.Equal(Ping, Waiting(pinging, Ms(1000), received: 10, sent: 150));
        Assert.Equal(Dead, Waiting(pinging, Ms(3000), received: 10, sent: 200));

        // A long request the server keeps reading is alive.
        var writing = new LivenessDetector(Timeout);
        for (var k = 0; k < 5; k++)
        {
            Assert.Equal(Alive, writing.Observe(Ms(k * 2000), waiting: true, sending: true, bytesReceived: 10, bytesSent: 100 + (k * 100)));
        }
    }

    [Fact]
    public void No_ping_is_sent_behind_a_request_being_written_but_a_stalled_write_is_dead_at_the_timeout()
    {
        var detector = new LivenessDetector(Timeout);
        Assert.Equal(Alive, detector.Observe(Ms(0), waiting: true, sending: true, bytesReceived: 10, bytesSent: 100));
        Assert.Equal(Alive, detector.Observe(Ms(1000), waiting: true, sending: true, bytesReceived: 10, bytesSent: 100));
        Assert.Equal(Alive, detector.Observe(Ms(3000) - 1, waiting: true, sending: true, bytesReceived: 10, bytesSent: 100));
        Assert.Equal(Dead, detector.Observe(Ms(3000), waiting: true, sending: true, bytesReceived: 10, bytesSent: 100));
    }

    [Fact]
    public void Silence_is_the_silent_time_at_the_last_observation_that_found_silence()
    {
        var detector = new LivenessDetector(Timeout);
        Assert.Equal(TimeSpan.Zero, detector.Silence);
        Waiting(detector, Ms(0), received: 1);
        Waiting(detector, Ms(1250), received: 1);
        Assert.Equal(TimeSpan.FromMilliseconds(1250), detector.Silence);

        Waiting(detector, Ms(2000), received: 2); // bytes moved: not a silent observation
        Assert.Equal(TimeSpan.FromMilliseconds(1250), detector.Silence);
        Waiting(detector, Ms(2700), received: 2);
        Assert.Equal(TimeSpan.FromMilliseconds(700), detector.Silence);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void A_timeout_that_is_not_positive_is_refused(int milliseconds)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new LivenessDetector(TimeSpan.FromMilliseconds(milliseconds)));
        Assert.Equal("timeout", error.ParamName);
    }

    /// <summary>The <see cref="Stopwatch"/> timestamp <paramref name="milliseconds"/> after an arbitrary origin.</summary>
    private static long Ms(long milliseconds) => 123_456_789 + (milliseconds * Stopwatch.Frequency / 1000);

    private static LivenessDetector.Verdict Waiting(LivenessDetector detector, long now, long received, long sent = 0) =>
        detector.Observe(now, waiting: true, sending: false, received, sent);
}
