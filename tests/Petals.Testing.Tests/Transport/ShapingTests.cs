using System.Diagnostics;
using Petals.Testing.Time;
using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Testing.Tests.Transport;

/// <summary>Timing and faults of the shaping decorator, on a manual clock so the timing is exact.</summary>
public sealed class ShapingTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Each_direction_is_delayed_by_half_the_round_trip()
    {
        var clock = new ManualTimeProvider();
        var (client, server, listener) = await ConnectAsync(new NetworkShapingOptions { RoundTripLatency = TimeSpan.FromMilliseconds(100) }, clock);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;

        await c.WriteAsync(new byte[] { 1, 2, 3 }, Ct);
        var buffer = new byte[16];
        var read = s.ReadAsync(buffer, Ct).AsTask();
        clock.Advance(TimeSpan.FromMilliseconds(49));
        await AssertStillPending(read);
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(3, await read.WaitAsync(Bound, Ct));

        // The reply takes the other half.
        await s.WriteAsync(new byte[] { 9 }, Ct);
        var reply = c.ReadAsync(buffer, Ct).AsTask();
        clock.Advance(TimeSpan.FromMilliseconds(49.9));
        await AssertStillPending(reply);
        clock.Advance(TimeSpan.FromMilliseconds(0.1));
        Assert.Equal(1, await reply.WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task Bandwidth_paces_the_bytes()
    {
        var clock = new ManualTimeProvider();
        var (client, server, listener) = await ConnectAsync(new NetworkShapingOptions { BandwidthBytesPerSecond = 1000 }, clock);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;

        await c.WriteAsync(new byte[500], Ct);
        await c.WriteAsync(new byte[500], Ct);
        var buffer = new byte[2000];
        var first = s.ReadAsync(buffer, Ct).AsTask();
        clock.Advance(TimeSpan.FromMilliseconds(499));
        await AssertStillPending(first);
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(500, await first.WaitAsync(Bound, Ct));

        var second = s.ReadAsync(buffer, Ct).AsTask();
        clock.Advance(TimeSpan.FromMilliseconds(499));
        await AssertStillPending(second);
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(500, await second.WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task Jitter_is_drawn_from_the_seeded_generator()
    {
        const int seed = 12345;
        var clock = new ManualTimeProvider();
        var jitter = TimeSpan.FromMilliseconds(100);
        var (client, server, listener) = await ConnectAsync(new NetworkShapingOptions { Jitter = jitter, Seed = seed }, clock);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;

        var expected = TimeSpan.FromTicks((long)(new Random(seed).NextDouble() * jitter.Ticks));
        Assert.True(expected > TimeSpan.FromTicks(1));
        await c.WriteAsync(new byte[] { 7 }, Ct);
        var read = s.ReadAsync(new byte[4], Ct).AsTask();
        clock.Advance(expected - TimeSpan.FromTicks(1));
        await AssertStillPending(read);
        clock.Advance(TimeSpan.FromTicks(1));
        Assert.Equal(1, await read.WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task Jitter_never_reorders_bytes()
    {
        var options = new NetworkShapingOptions { Jitter = TimeSpan.FromMilliseconds(3), Seed = 3 };
        var (client, server, listener) = await ConnectAsync(options, TimeProvider.System);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;
        for (var i = 0; i < 200; i++)
        {
            await c.WriteAsync(new[] { (byte)i }, Ct);
        }

        await c.CompleteWritesAsync(Ct);
        var received = new List<byte>();
        var buffer = new byte[64];
        int n;
        while ((n = await s.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct)) > 0)
        {
            received.AddRange(buffer.AsSpan(0, n).ToArray());
        }

        Assert.Equal(Enumerable.Range(0, 200).Select(i => (byte)i), received);
    }

    [Fact]
    public async Task Writes_wait_when_the_shaper_buffer_is_full()
    {
        var clock = new ManualTimeProvider();
        var options = new NetworkShapingOptions { RoundTripLatency = TimeSpan.FromSeconds(2), MaxBufferedBytes = 64 * 1024 };
        var (client, server, listener) = await ConnectAsync(options, clock);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;

        await c.WriteAsync(new byte[64 * 1024], Ct).AsTask().WaitAsync(Bound, Ct);
        var blocked = c.WriteAsync(new byte[1], Ct).AsTask();
        await AssertStillPending(blocked);
        clock.Advance(TimeSpan.FromSeconds(1));
        await blocked.WaitAsync(Bound, Ct);
    }

    [Fact]
    public async Task Refused_connects_are_injected_for_all_or_one_address()
    {
        var memory = new MemoryTransport();
        var options = new NetworkShapingOptions();
        var shaped = memory.WithShaping(options);
        await using var listener = await shaped.ListenAsync(PeerAddress.Parse("mem://a"), Ct);
        var address = listener.LocalAddress;

        options.RefusedAddresses.Add(address);
        var error = await Assert.ThrowsAsync<TransportException>(async () => await shaped.ConnectAsync(address, Ct));
        Assert.Equal(TransportErrorKind.ConnectionRefused, error.Kind);
        Assert.Contains("fault injected", error.Message, StringComparison.Ordinal);
        options.RefusedAddresses.Remove(address);

        options.RefuseAllConnects = true;
        await Assert.ThrowsAsync<TransportException>(async () => await shaped.ConnectAsync(address, Ct));
        options.RefuseAllConnects = false;

        await using var ok = await shaped.ConnectAsync(address, Ct);
        await using var accepted = await listener.AcceptAsync(Ct);
        Assert.Same(options, shaped.GetService(typeof(NetworkShapingOptions)));
        Assert.Same(memory, shaped.GetService(typeof(MemoryTransport)));
    }

    [Fact]
    public async Task A_stream_is_dropped_after_the_given_number_of_bytes()
    {
        var (client, server, listener) = await ConnectAsync(new NetworkShapingOptions { DropAfterBytes = 1000 }, TimeProvider.System);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;

        await c.WriteAsync(new byte[600], Ct);
        var local = await Assert.ThrowsAsync<TransportException>(async () => await c.WriteAsync(new byte[600], Ct));
        Assert.Equal(TransportErrorKind.Aborted, local.Kind);
        Assert.Contains("fault injected: stream dropped after 1000 bytes", local.Message, StringComparison.Ordinal);

        var peer = await Assert.ThrowsAsync<TransportException>(async () =>
        {
            var buffer = new byte[4096];
            while (await s.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct) > 0)
            {
            }
        });
        Assert.Contains("aborted by peer: fault injected", peer.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_stream_is_dropped_at_the_given_time()
    {
        var clock = new ManualTimeProvider();
        var (client, server, listener) = await ConnectAsync(new NetworkShapingOptions { DropAfterTime = TimeSpan.FromSeconds(5) }, clock);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;

        clock.Advance(TimeSpan.FromSeconds(4.9));
        await c.WriteAsync(new byte[] { 1 }, Ct);
        Assert.Equal(1, await s.ReadAsync(new byte[4], Ct).AsTask().WaitAsync(Bound, Ct));

        clock.Advance(TimeSpan.FromSeconds(0.1));
        var local = await Assert.ThrowsAsync<TransportException>(async () => await c.WriteAsync(new byte[] { 2 }, Ct));
        Assert.Contains("fault injected: stream dropped after", local.Message, StringComparison.Ordinal);
        var peer = await Assert.ThrowsAsync<TransportException>(async () => await s.ReadAsync(new byte[4], Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.Aborted, peer.Kind);
    }

    [Fact]
    public async Task Real_clock_latency_is_at_least_the_round_trip()
    {
        // Lower bound only: a loaded machine may add delay, never remove it.
        var rtt = TimeSpan.FromMilliseconds(60);
        var (client, server, listener) = await ConnectAsync(new NetworkShapingOptions { RoundTripLatency = rtt }, TimeProvider.System);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;
        var buffer = new byte[8];
        var stopwatch = Stopwatch.StartNew();
        await c.WriteAsync(new byte[] { 1 }, Ct);
        await s.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct);
        await s.WriteAsync(new byte[] { 2 }, Ct);
        await c.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.True(stopwatch.Elapsed >= rtt - TimeSpan.FromMilliseconds(2), $"round trip took {stopwatch.Elapsed}, less than {rtt}");
    }

    [Fact]
    public async Task A_clock_advanced_while_the_pump_arms_its_timer_does_not_delay_delivery()
    {
        // The test thread advances the clock between the pump reading the time and arming its timer.
        var clock = new ClockAdvancedWhileArming();
        var (client, server, listener) = await ConnectAsync(new NetworkShapingOptions { RoundTripLatency = TimeSpan.FromMilliseconds(100) }, clock);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;

        clock.AdvanceWhileArming = TimeSpan.FromMilliseconds(49);
        await c.WriteAsync(new byte[] { 1, 2, 3 }, Ct);
        var read = s.ReadAsync(new byte[16], Ct).AsTask();
        var deadline = DateTime.UtcNow + Bound;
        while (clock.AdvanceWhileArming > TimeSpan.Zero && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5, Ct);
        }

        await AssertStillPending(read);
        clock.Inner.Advance(TimeSpan.FromMilliseconds(1)); // 50 ms after the write: due now
        Assert.Equal(3, await read.WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task A_due_time_that_passes_while_the_pump_prepares_its_wait_delivers_at_once()
    {
        // Every clock read moves 3 ms on (a machine too busy to run the pump promptly): the pump sees the chunk due in
        // 1 ms, and by the time it arms its timer the due time is 2 ms past. A negative timer length is rejected by
        // the system timer, which used to stop the pump with the bytes undelivered and the peer never told.
        var clock = new SteppingClock(TimeSpan.FromMilliseconds(3));
        var (client, server, listener) = await ConnectAsync(new NetworkShapingOptions { RoundTripLatency = TimeSpan.FromMilliseconds(8) }, clock);
        await using var _ = listener;
        await using var c = client;
        await using var s = server;

        // One chunk and no other clock reader until it arrives, so the reads happen in exactly that order.
        await c.WriteAsync(new byte[] { 1, 2, 3 }, Ct);
        var buffer = new byte[16];
        Assert.Equal(3, await s.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(new byte[] { 1, 2, 3 }, buffer[..3]);
        await c.CompleteWritesAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(0, await s.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task A_shaper_that_fails_aborts_the_stream_so_the_peer_does_not_wait_forever()
    {
        var (client, server, listener) = await ConnectAsync(new NetworkShapingOptions { RoundTripLatency = TimeSpan.FromMilliseconds(10) }, new ClockWithoutTimers());
        await using var _ = listener;
        await using var c = client;
        await using var s = server;

        await c.WriteAsync(new byte[] { 1, 2, 3 }, Ct);
        var error = await Assert.ThrowsAsync<TransportException>(async () => await s.ReadAsync(new byte[16], Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.Aborted, error.Kind);
        Assert.Contains("shaper failed: no timers on this clock", error.Message, StringComparison.Ordinal);

        // The writer learns of it too, with the same cause.
        var local = await Assert.ThrowsAsync<TransportException>(async () => await c.WriteAsync(new byte[] { 4 }, Ct));
        Assert.Contains("no timers on this clock", local.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dispose_after_a_cancelled_half_close_aborts_instead_of_waiting_for_the_peer_to_read()
    {
        // A 1 KiB in-memory buffer that nobody reads: the shaper's pump blocks delivering the first chunk.
        var transport = new MemoryTransport(bufferBytes: 1024).WithShaping(new NetworkShapingOptions(), TimeProvider.System);
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://server"), Ct);
        var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct);
        await client.WriteAsync(new byte[256 * 1024], Ct);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(100);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await client.CompleteWritesAsync(cts.Token));

        // The end of writes never reached the peer: disposing must abort (as TCP does), not wait for the peer to read.
        await client.DisposeAsync().AsTask().WaitAsync(Bound, Ct);
        var error = await Assert.ThrowsAsync<TransportException>(async () =>
        {
            var buffer = new byte[64 * 1024];
            while (await server.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct) > 0)
            {
            }
        });
        Assert.Equal(TransportErrorKind.Aborted, error.Kind);
    }

    [Fact]
    public void Invalid_options_are_rejected()
    {
        var memory = new MemoryTransport();
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.WithShaping(new NetworkShapingOptions { RoundTripLatency = TimeSpan.FromSeconds(-1) }));
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.WithShaping(new NetworkShapingOptions { BandwidthBytesPerSecond = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.WithShaping(new NetworkShapingOptions { DropAfterBytes = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.WithShaping(new NetworkShapingOptions { MaxBufferedBytes = 10 }));
    }

    /// <summary>A manual clock whose timers cannot be created: the shaper's pump fails on its first delay.</summary>
    private sealed class ClockWithoutTimers : TimeProvider
    {
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => 1_000_000;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            throw new InvalidOperationException("no timers on this clock");
    }

    /// <summary>A clock whose every read is <paramref name="step"/> later than the one before; timers run on real time.</summary>
    private sealed class SteppingClock(TimeSpan step) : TimeProvider
    {
        private long _now = 1_000_000;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Interlocked.Add(ref _now, step.Ticks);
    }

    /// <summary>A manual clock that, once, advances itself inside <see cref="CreateTimer"/> before the timer is armed.</summary>
    private sealed class ClockAdvancedWhileArming : TimeProvider
    {
        public ManualTimeProvider Inner { get; } = new();

        public TimeSpan AdvanceWhileArming { get; set; }

        public override long TimestampFrequency => Inner.TimestampFrequency;

        public override long GetTimestamp() => Inner.GetTimestamp();

        public override DateTimeOffset GetUtcNow() => Inner.GetUtcNow();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (AdvanceWhileArming > TimeSpan.Zero)
            {
                Inner.Advance(AdvanceWhileArming);
                AdvanceWhileArming = TimeSpan.Zero;
            }

            return Inner.CreateTimer(callback, state, dueTime, period);
        }
    }

    private static async Task<(ITransportStream Client, ITransportStream Server, ITransportListener Listener)> ConnectAsync(NetworkShapingOptions options, TimeProvider clock)
    {
        var transport = new MemoryTransport().WithShaping(options, clock);
        var listener = await transport.ListenAsync(PeerAddress.Parse("mem://server"), Ct);
        var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        var server = await listener.AcceptAsync(Ct);
        return (client, server, listener);
    }

    private static async Task AssertStillPending(Task task)
    {
        // Give the pump real time to (wrongly) deliver early.
        await Task.Delay(100, Ct);
        Assert.False(task.IsCompleted, "delivered before its due time");
    }
}
