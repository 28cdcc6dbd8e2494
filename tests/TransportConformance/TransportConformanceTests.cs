using System.Diagnostics;
using Petals.Transport;

namespace Petals.Testing.Conformance;

/// <summary>The transports a conformance run uses: the client side, the server side and where the server listens.</summary>
/// <param name="Client">The transport that connects.</param>
/// <param name="Server">The transport that listens (may be the same object).</param>
/// <param name="BindAddress">Where to listen (port 0 for network transports).</param>
public sealed record TransportUnderTest(ITransport Client, ITransport Server, PeerAddress BindAddress);

/// <summary>
/// The behaviour every <see cref="ITransport"/> must have. Each transport's test project subclasses this once
/// (linked source: tests/TransportConformance) and says how to create the transport under test.
/// </summary>
public abstract class TransportConformanceTests
{
    /// <summary>The size of the large-payload test.</summary>
    protected virtual int LargePayloadBytes => 64 << 20;

    /// <summary>How long any single test may take before it is a failure.</summary>
    protected virtual TimeSpan Bound => TimeSpan.FromSeconds(30);

    /// <summary>Whether the transport carries abort reasons to the peer (the peer's error message contains the reason).</summary>
    protected virtual bool CarriesAbortReason => true;

    /// <summary>A reason to skip every test (e.g. the platform lacks the transport), or null.</summary>
    protected virtual string? SkipReason => null;

    /// <summary>Creates a fresh transport under test.</summary>
    protected abstract ValueTask<TransportUnderTest> CreateTransportAsync();

    /// <summary>An address of the transport's kind where nothing listens.</summary>
    protected abstract ValueTask<PeerAddress> GetDeadAddressAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Bytes_arrive_in_order_across_many_writes_and_echo_back()
    {
        await using var pair = await ConnectAsync();
        var sent = Pattern(300_000, seed: 1);
        var writer = Task.Run(async () =>
        {
            var offset = 0;
            var size = 1;
            while (offset < sent.Length)
            {
                var n = Math.Min(size, sent.Length - offset);
                await pair.Client.WriteAsync(sent.AsMemory(offset, n), Ct);
                offset += n;
                size = size * 7 % 9973 + 1;
            }

            await pair.Client.CompleteWritesAsync(Ct);
        }, Ct);

        var echo = Task.Run(async () =>
        {
            var buffer = new byte[4093];
            int n;
            while ((n = await pair.Server.ReadAsync(buffer, Ct)) > 0)
            {
                await pair.Server.WriteAsync(buffer.AsMemory(0, n), Ct);
            }

            await pair.Server.CompleteWritesAsync(Ct);
        }, Ct);

        var received = await WithBound(ReadToEndAsync(pair.Client));
        await WithBound(Task.WhenAll(writer, echo));
        Assert.Equal(sent.Length, received.Length);
        Assert.True(sent.AsSpan().SequenceEqual(received), "the echoed bytes differ from the bytes sent");
    }

    [Fact]
    public async Task Large_payload_arrives_intact()
    {
        await using var pair = await ConnectAsync();
        var block = Pattern(1 << 20, seed: 2);
        var total = LargePayloadBytes;
        var writer = Task.Run(async () =>
        {
            for (var sent = 0; sent < total; sent += block.Length)
            {
                block[0] = (byte)(sent >> 20);
                await pair.Client.WriteAsync(block.AsMemory(0, Math.Min(block.Length, total - sent)), Ct);
            }

            await pair.Client.CompleteWritesAsync(Ct);
        }, Ct);

        var reader = Task.Run(async () =>
        {
            var buffer = new byte[256 * 1024];
            long received = 0;
            var expected = Pattern(1 << 20, seed: 2);
            int n;
            while ((n = await pair.Server.ReadAsync(buffer, Ct)) > 0)
            {
                for (var i = 0; i < n; i++)
                {
                    var position = received + i;
                    var offset = (int)(position % expected.Length);
                    var want = offset == 0 ? (byte)(position >> 20) : expected[offset];
                    if (buffer[i] != want)
                    {
                        Assert.Fail($"byte {position} is {buffer[i]}, expected {want}");
                    }
                }

                received += n;
            }

            return received;
        }, Ct);

        await WithBound(writer);
        Assert.Equal(total, await WithBound(reader));
    }

    [Fact]
    public async Task Thirty_two_concurrent_streams_stay_separate()
    {
        var t = await CreateAsync();
        await using var listener = await t.Server.ListenAsync(t.BindAddress, Ct);
        const int streams = 32;
        var server = Task.Run(async () =>
        {
            var handlers = new List<Task>();
            for (var i = 0; i < streams; i++)
            {
                var s = await listener.AcceptAsync(Ct);
                handlers.Add(Task.Run(async () =>
                {
                    await using (s)
                    {
                        var buffer = new byte[8192];
                        int n;
                        while ((n = await s.ReadAsync(buffer, Ct)) > 0)
                        {
                            await s.WriteAsync(buffer.AsMemory(0, n), Ct);
                        }

                        await s.CompleteWritesAsync(Ct);
                    }
                }, Ct));
            }

            await Task.WhenAll(handlers);
        }, Ct);

        var clients = Enumerable.Range(0, streams).Select(i => Task.Run(async () =>
        {
            await using var s = await t.Client.ConnectAsync(listener.LocalAddress, Ct);
            var data = Pattern(128 * 1024 + i, seed: 100 + i);
            var write = Task.Run(async () =>
            {
                await s.WriteAsync(data, Ct);
                await s.CompleteWritesAsync(Ct);
            }, Ct);
            var back = await ReadToEndAsync(s);
            await write;
            Assert.True(data.AsSpan().SequenceEqual(back), $"stream {i} got bytes of another stream or corrupted bytes");
        }, Ct)).ToArray();

        await WithBound(Task.WhenAll(clients));
        await WithBound(server);
    }

    [Fact]
    public async Task Client_abort_reaches_the_server_with_its_reason() => await AbortReachesPeer(clientAborts: true);

    [Fact]
    public async Task Server_abort_reaches_the_client_with_its_reason() => await AbortReachesPeer(clientAborts: false);

    [Fact]
    public async Task A_peer_that_only_writes_learns_of_an_abort()
    {
        await using var pair = await ConnectAsync();
        pair.Server.Abort("server gave up");
        var chunk = new byte[16 * 1024];
        var stopwatch = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<TransportException>(async () =>
        {
            while (stopwatch.Elapsed < Bound)
            {
                await pair.Client.WriteAsync(chunk, Ct);
            }
        });
        Assert.True(error.Kind == TransportErrorKind.Aborted || error.Kind == TransportErrorKind.ConnectionReset, $"kind {error.Kind}: {error.Message}");
    }

    [Fact]
    public async Task Local_operations_after_abort_fail_as_aborted()
    {
        await using var pair = await ConnectAsync();
        pair.Client.Abort("done here");
        var read = await Assert.ThrowsAsync<TransportException>(async () => await pair.Client.ReadAsync(new byte[10], Ct));
        Assert.Equal(TransportErrorKind.Aborted, read.Kind);
        Assert.Contains("done here", read.Message, StringComparison.Ordinal);
        var write = await Assert.ThrowsAsync<TransportException>(async () => await pair.Client.WriteAsync(new byte[10], Ct));
        Assert.Equal(TransportErrorKind.Aborted, write.Kind);
        pair.Client.Abort("second abort is ignored");
    }

    [Fact]
    public async Task Abort_wakes_a_pending_local_read()
    {
        await using var pair = await ConnectAsync();
        var read = pair.Client.ReadAsync(new byte[10], Ct).AsTask();
        await Task.Delay(50, Ct);
        Assert.False(read.IsCompleted);
        pair.Client.Abort("stop waiting");
        var error = await Assert.ThrowsAsync<TransportException>(() => WithBound(read));
        Assert.Equal(TransportErrorKind.Aborted, error.Kind);
    }

    [Fact]
    public async Task Half_close_lets_the_other_direction_continue()
    {
        await using var pair = await ConnectAsync();
        await pair.Client.WriteAsync("request"u8.ToArray(), Ct);
        await pair.Client.CompleteWritesAsync(Ct);
        await pair.Client.CompleteWritesAsync(Ct); // idempotent
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await pair.Client.WriteAsync(new byte[1], Ct));

        var request = await WithBound(ReadToEndAsync(pair.Server));
        Assert.Equal("request"u8.ToArray(), request);
        Assert.Equal(0, await pair.Server.ReadAsync(new byte[1], Ct)); // stays at end

        await pair.Server.WriteAsync("reply after the client's half-close"u8.ToArray(), Ct);
        await pair.Server.CompleteWritesAsync(Ct);
        var reply = await WithBound(ReadToEndAsync(pair.Client));
        Assert.Equal("reply after the client's half-close"u8.ToArray(), reply);
    }

    [Fact]
    public async Task Cancelled_read_leaves_the_stream_usable()
    {
        await using var pair = await ConnectAsync();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var read = pair.Server.ReadAsync(new byte[16], cts.Token).AsTask();
        await Task.Delay(30, Ct);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => WithBound(read));

        await pair.Client.WriteAsync("still works"u8.ToArray(), Ct);
        await pair.Client.CompleteWritesAsync(Ct);
        Assert.Equal("still works"u8.ToArray(), await WithBound(ReadToEndAsync(pair.Server)));
    }

    [Fact]
    public async Task Cancelled_connect_and_accept_surface_as_cancellation()
    {
        var t = await CreateAsync();
        await using var listener = await t.Server.ListenAsync(t.BindAddress, Ct);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await t.Client.ConnectAsync(listener.LocalAddress, cancelled.Token));

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var accept = listener.AcceptAsync(cts.Token).AsTask();
        await Task.Delay(30, Ct);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => WithBound(accept));
    }

    [Fact]
    public async Task Connect_to_a_dead_address_is_refused_quickly()
    {
        var t = await CreateAsync();
        var dead = await GetDeadAddressAsync();
        var stopwatch = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<TransportException>(async () => await t.Client.ConnectAsync(dead, Ct));
        Assert.Equal(TransportErrorKind.ConnectionRefused, error.Kind);
        Assert.Contains(dead.Location, error.Message, StringComparison.Ordinal);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(10), $"refusal took {stopwatch.Elapsed}");
    }

    [Fact]
    public async Task Dispose_after_half_close_is_graceful_and_dispose_without_it_aborts()
    {
        await using (var pair = await ConnectAsync())
        {
            await pair.Client.WriteAsync("bye"u8.ToArray(), Ct);
            await pair.Client.CompleteWritesAsync(Ct);
            await pair.Client.DisposeAsync();
            await pair.Client.DisposeAsync(); // idempotent
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => await pair.Client.ReadAsync(new byte[1], Ct));
            Assert.Equal("bye"u8.ToArray(), await WithBound(ReadToEndAsync(pair.Server)));
        }

        await using (var pair = await ConnectAsync())
        {
            await pair.Client.DisposeAsync();
            var error = await Assert.ThrowsAsync<TransportException>(async () => await WithBound(ReadToEndAsync(pair.Server)));
            Assert.True(error.Kind == TransportErrorKind.Aborted || error.Kind == TransportErrorKind.ConnectionReset, $"kind {error.Kind}: {error.Message}");
        }
    }

    [Fact]
    public async Task Disposing_the_listener_ends_a_pending_accept_and_later_connects_fail()
    {
        var t = await CreateAsync();
        var listener = await t.Server.ListenAsync(t.BindAddress, Ct);
        var address = listener.LocalAddress;
        var accept = listener.AcceptAsync(Ct).AsTask();
        await Task.Delay(30, Ct);
        await listener.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => WithBound(accept));
        var error = await Assert.ThrowsAsync<TransportException>(async () => await t.Client.ConnectAsync(address, Ct));
        Assert.Equal(TransportErrorKind.ConnectionRefused, error.Kind);
    }

    [Fact]
    public async Task Streams_know_their_remote_addresses()
    {
        await using var pair = await ConnectAsync();
        Assert.Equal(pair.ListenerAddress.WithPeerId(null), pair.Client.RemoteAddress.WithPeerId(null));
        Assert.False(pair.Server.RemoteAddress.IsEmpty);
        Assert.Equal(pair.ListenerAddress.Scheme, pair.Server.RemoteAddress.Scheme);
    }

    private async Task AbortReachesPeer(bool clientAborts)
    {
        await using var pair = await ConnectAsync();
        var (aborter, victim) = clientAborts ? (pair.Client, pair.Server) : (pair.Server, pair.Client);
        await aborter.WriteAsync(new byte[1000], Ct);
        aborter.Abort("reason-42: test abort");
        var error = await Assert.ThrowsAsync<TransportException>(async () => await WithBound(ReadToEndAsync(victim)));
        if (CarriesAbortReason)
        {
            Assert.Equal(TransportErrorKind.Aborted, error.Kind);
            Assert.Contains("aborted by peer: reason-42: test abort", error.Message, StringComparison.Ordinal);
        }
        else
        {
            Assert.True(error.Kind == TransportErrorKind.Aborted || error.Kind == TransportErrorKind.ConnectionReset, $"kind {error.Kind}: {error.Message}");
        }
    }

    private async Task<TransportUnderTest> CreateAsync()
    {
        if (SkipReason is { } skip)
        {
            Assert.Skip(skip);
        }

        return await CreateTransportAsync();
    }

    private async Task<Pair> ConnectAsync()
    {
        var t = await CreateAsync();
        var listener = await t.Server.ListenAsync(t.BindAddress, Ct);
        var accept = listener.AcceptAsync(Ct).AsTask();
        var client = await t.Client.ConnectAsync(listener.LocalAddress, Ct);
        var server = await WithBound(accept);
        return new Pair(client, server, listener);
    }

    private async Task<T> WithBound<T>(Task<T> task) => await task.WaitAsync(Bound, Ct);

    private async Task WithBound(Task task) => await task.WaitAsync(Bound, Ct);

    private static async Task<byte[]> ReadToEndAsync(ITransportStream stream)
    {
        using var all = new MemoryStream();
        var buffer = new byte[65536];
        int n;
        while ((n = await stream.ReadAsync(buffer, Ct)) > 0)
        {
            all.Write(buffer, 0, n);
        }

        return all.ToArray();
    }

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private sealed record Pair(ITransportStream Client, ITransportStream Server, ITransportListener Listener) : IAsyncDisposable
    {
        public PeerAddress ListenerAddress => Listener.LocalAddress;

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            await Server.DisposeAsync();
            await Listener.DisposeAsync();
        }
    }
}
