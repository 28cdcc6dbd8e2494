using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Petals.Hosting;
using Petals.Testing.Time;
using Petals.Testing.Transport;

namespace Petals.Transport.Multiplexing.Tests;

/// <summary>What the multiplexer adds over a plain transport: sharing, replacement of broken connections, limits, idle close.</summary>
public sealed class MultiplexingTransportTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Many_streams_to_one_peer_share_one_inner_connection()
    {
        var network = new MemoryTransport();
        var counting = new CountingTransport(network);
        var client = counting.WithMultiplexing();
        await using var listener = await network.WithMultiplexing().ListenAsync(PeerAddress.Parse("mem://share"), Ct);
        var server = EchoAll(listener);

        var streams = await Task.WhenAll(Enumerable.Range(0, 20).Select(async i =>
        {
            var s = await client.ConnectAsync(listener.LocalAddress, Ct);
            await s.WriteAsync(new[] { (byte)i }, Ct);
            await s.CompleteWritesAsync(Ct);
            var back = new byte[1];
            Assert.Equal(1, await s.ReadAsync(back, Ct).AsTask().WaitAsync(Bound, Ct));
            Assert.Equal((byte)i, back[0]);
            return s;
        }));

        Assert.Equal(1, counting.Connects);
        Assert.Equal(1L, ((MultiplexingTransport)client).PhysicalConnects);
        foreach (var s in streams)
        {
            await s.DisposeAsync();
        }

        // Later streams reuse it too.
        await using var again = await client.ConnectAsync(listener.LocalAddress, Ct);
        Assert.Equal(1, counting.Connects);
        await ((IAsyncDisposable)client).DisposeAsync();
        GC.KeepAlive(server);
    }

    [Fact]
    public async Task Different_peer_ids_at_one_location_get_their_own_connections()
    {
        var network = new MemoryTransport();
        var counting = new CountingTransport(network);
        await using var client = (MultiplexingTransport)counting.WithMultiplexing();
        await using var listener = await network.WithMultiplexing().ListenAsync(PeerAddress.Parse("mem://ids"), Ct);
        _ = EchoAll(listener);
        await using var a = await client.ConnectAsync(PeerAddress.Parse("mem://peer-a@ids"), Ct);
        await using var b = await client.ConnectAsync(PeerAddress.Parse("mem://peer-b@ids"), Ct);
        await using var a2 = await client.ConnectAsync(PeerAddress.Parse("mem://peer-a@ids"), Ct);
        Assert.Equal(2, counting.Connects);
        Assert.Equal(2, client.PooledConnections);
    }

    [Fact]
    public async Task A_broken_inner_connection_fails_its_streams_and_the_next_connect_opens_a_new_one()
    {
        var network = new MemoryTransport();
        var counting = new CountingTransport(network);
        await using var client = (MultiplexingTransport)counting.WithMultiplexing();
        await using var listener = await network.WithMultiplexing().ListenAsync(PeerAddress.Parse("mem://break"), Ct);
        var accepted = new ConcurrentQueue<ITransportStream>();
        _ = Task.Run(async () =>
        {
            while (true)
            {
                accepted.Enqueue(await listener.AcceptAsync(Ct));
            }
        }, Ct);

        var s1 = await client.ConnectAsync(listener.LocalAddress, Ct);
        var s2 = await client.ConnectAsync(listener.LocalAddress, Ct);
        var pendingRead = s1.ReadAsync(new byte[8], Ct).AsTask();
        Assert.Equal(1, counting.Connects);
        await WaitUntil(() => accepted.Count == 2); // both handed to the server before the cable is cut

        counting.Streams.Single().Abort("cable cut");

        var readError = await Assert.ThrowsAsync<TransportException>(() => pendingRead.WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.ConnectionReset, readError.Kind);
        Assert.Contains("multiplexed connection", readError.Message, StringComparison.Ordinal);
        var writeError = await Assert.ThrowsAsync<TransportException>(async () =>
        {
            var deadline = DateTime.UtcNow + Bound;
            while (DateTime.UtcNow < deadline)
            {
                await s2.WriteAsync(new byte[1024], Ct);
            }
        });
        Assert.Equal(TransportErrorKind.ConnectionReset, writeError.Kind);

        // The server side's streams fail too.
        foreach (var s in accepted)
        {
            var e = await Assert.ThrowsAsync<TransportException>(async () => await s.ReadAsync(new byte[8], Ct).AsTask().WaitAsync(Bound, Ct));
            Assert.True(e.Kind == TransportErrorKind.ConnectionReset, $"kind {e.Kind}: {e.Message}");
        }

        await WaitUntil(() => client.PooledConnections == 0); // the broken connection leaves the pool
        await using var s3 = await client.ConnectAsync(listener.LocalAddress, Ct);
        Assert.Equal(2, counting.Connects);
        await s3.WriteAsync("fresh"u8.ToArray(), Ct);
        await s3.CompleteWritesAsync(Ct);
        await WaitUntil(() => accepted.Count == 3);
        var last = accepted.Last();
        var buffer = new byte[16];
        Assert.Equal(5, await last.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct));
        await s1.DisposeAsync();
        await s2.DisposeAsync();
    }

    [Fact]
    public async Task A_listener_refuses_channels_beyond_its_limit_and_takes_new_ones_when_one_closes()
    {
        var network = new MemoryTransport();
        var counting = new CountingTransport(network);
        await using var client = (MultiplexingTransport)counting.WithMultiplexing();
        var serverTransport = network.WithMultiplexing(new MultiplexingTransportOptions { MaxChannelsPerConnection = 3 });
        await using var listener = await serverTransport.ListenAsync(PeerAddress.Parse("mem://limited"), Ct);
        var accepted = new ConcurrentQueue<ITransportStream>();
        _ = Task.Run(async () =>
        {
            while (true)
            {
                accepted.Enqueue(await listener.AcceptAsync(Ct));
            }
        }, Ct);

        // Open streams (each says hello) until the server refuses one: one connection never carries more than 3.
        var open = new List<ITransportStream>();
        TransportException? refusal = null;
        for (var i = 0; i < 10 && refusal is null; i++)
        {
            try
            {
                var s = await client.ConnectAsync(listener.LocalAddress, Ct).AsTask().WaitAsync(Bound, Ct);
                await s.WriteAsync(new[] { (byte)i }, Ct);
                open.Add(s);
            }
            catch (TransportException e)
            {
                refusal = e;
            }
        }

        Assert.NotNull(refusal);
        Assert.Equal(TransportErrorKind.ConnectionRefused, refusal!.Kind);
        Assert.Contains("refused a new stream", refusal.Message, StringComparison.Ordinal);
        Assert.Contains("mem://limited", refusal.Message, StringComparison.Ordinal);
        Assert.Equal(1, counting.Connects);
        await WaitUntil(() => accepted.Count == open.Count);
        Assert.InRange(open.Count, 1, 3);

        // Existing streams are unharmed by the refusal (the server's first stream is the client's stream number hello).
        var server = accepted.First();
        var hello = new byte[1];
        Assert.Equal(1, await server.ReadAsync(hello, Ct).AsTask().WaitAsync(Bound, Ct));
        var partner = open[hello[0]];
        await partner.WriteAsync("still here"u8.ToArray(), Ct);
        var buffer = new byte[32];
        var got = 0;
        while (got < 10)
        {
            got += await server.ReadAsync(buffer.AsMemory(got), Ct).AsTask().WaitAsync(Bound, Ct);
        }

        Assert.Equal("still here"u8.ToArray(), buffer.AsSpan(0, 10).ToArray());
        open.Remove(partner);
        open.Insert(0, partner);

        // One closes in order (both sides end their writes): a new stream is taken.
        await open[0].CompleteWritesAsync(Ct);
        await server.CompleteWritesAsync(Ct);
        await open[0].DisposeAsync();
        await server.DisposeAsync();
        ITransportStream? another = null;
        await WaitUntil(async () =>
        {
            try
            {
                another = await client.ConnectAsync(listener.LocalAddress, Ct);
                return true;
            }
            catch (TransportException e) when (e.Kind == TransportErrorKind.ConnectionRefused)
            {
                return false;
            }
        });
        Assert.NotNull(another);
        await another!.DisposeAsync();
        foreach (var s in open.Skip(1))
        {
            await s.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_connecting_side_opens_no_more_than_its_own_limit_on_one_connection()
    {
        var network = new MemoryTransport();
        await using var client = (MultiplexingTransport)network.WithMultiplexing(new MultiplexingTransportOptions { MaxChannelsPerConnection = 2 });
        await using var listener = await network.WithMultiplexing().ListenAsync(PeerAddress.Parse("mem://client-limit"), Ct);
        await using var a = await client.ConnectAsync(listener.LocalAddress, Ct);
        await using var b = await client.ConnectAsync(listener.LocalAddress, Ct);
        var error = await Assert.ThrowsAsync<TransportException>(async () => await client.ConnectAsync(listener.LocalAddress, Ct));
        Assert.Equal(TransportErrorKind.ConnectionRefused, error.Kind);
        Assert.Contains("MaxChannelsPerConnection = 2", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_idle_connection_closes_after_the_idle_timeout_and_the_next_connect_opens_a_new_one()
    {
        var time = new ManualTimeProvider();
        var network = new MemoryTransport();
        var counting = new CountingTransport(network);
        var options = new MultiplexingTransportOptions { IdleTimeout = TimeSpan.FromSeconds(30), TimeProvider = time, CloseLinger = TimeSpan.Zero };
        await using var client = (MultiplexingTransport)counting.WithMultiplexing(options);
        await using var listener = await network.WithMultiplexing(new MultiplexingTransportOptions { IdleTimeout = TimeSpan.FromHours(1), TimeProvider = time }).ListenAsync(PeerAddress.Parse("mem://idle"), Ct);
        var server = Task.Run(async () => await listener.AcceptAsync(Ct), Ct);

        var s = await client.ConnectAsync(listener.LocalAddress, Ct);
        var accepted = await server.WaitAsync(Bound, Ct);
        await s.CompleteWritesAsync(Ct);
        await accepted.CompleteWritesAsync(Ct);
        await s.DisposeAsync();
        await accepted.DisposeAsync();
        await WaitUntil(() => client.OpenChannels == 0);

        // Not yet idle long enough: the connection stays.
        time.Advance(TimeSpan.FromSeconds(29));
        Assert.Equal(1, client.PooledConnections);
        Assert.False(counting.Streams.Single().IsBroken);

        time.Advance(TimeSpan.FromSeconds(2));
        await WaitUntil(() => client.PooledConnections == 0);

        // The server's side of it closes too (the peer ended the physical connection).
        await WaitUntil(() => ((MuxListener)listener).ConnectionCount == 0);

        var server2 = Task.Run(async () => await listener.AcceptAsync(Ct), Ct);
        await using var s2 = await client.ConnectAsync(listener.LocalAddress, Ct);
        await using var accepted2 = await server2.WaitAsync(Bound, Ct);
        Assert.Equal(2, counting.Connects);
    }

    [Fact]
    public async Task A_listener_closes_an_accepted_connection_that_opens_no_stream_within_the_idle_timeout()
    {
        var time = new ManualTimeProvider();
        var network = new MemoryTransport();
        var options = new MultiplexingTransportOptions { IdleTimeout = TimeSpan.FromSeconds(20), TimeProvider = time };
        var listener = (MuxListener)await network.WithMultiplexing(options).ListenAsync(PeerAddress.Parse("mem://silent"), Ct);
        await using var _ = listener;

        // A peer connects below the multiplexer and never opens a stream.
        await using var silent = await network.ConnectAsync(listener.LocalAddress, Ct);
        await WaitUntil(() => listener.ConnectionCount == 1);
        time.Advance(TimeSpan.FromSeconds(19));
        Assert.Equal(1, listener.ConnectionCount);

        time.Advance(TimeSpan.FromSeconds(2));
        await WaitUntil(() => listener.ConnectionCount == 0);

        // The peer sees the connection end (its reads end, in order or with a reset).
        var buffer = new byte[64];
        try
        {
            while (await silent.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct) > 0)
            {
            }
        }
        catch (TransportException)
        {
            // Ended with a reset: also an end.
        }
    }

    [Fact]
    public async Task A_connection_with_open_streams_is_not_idle()
    {
        var time = new ManualTimeProvider();
        var network = new MemoryTransport();
        var options = new MultiplexingTransportOptions { IdleTimeout = TimeSpan.FromSeconds(5), TimeProvider = time };
        await using var client = (MultiplexingTransport)network.WithMultiplexing(options);
        await using var listener = await network.WithMultiplexing(options).ListenAsync(PeerAddress.Parse("mem://busy"), Ct);
        var server = Task.Run(async () => await listener.AcceptAsync(Ct), Ct);
        await using var s = await client.ConnectAsync(listener.LocalAddress, Ct);
        await using var accepted = await server.WaitAsync(Bound, Ct);
        time.Advance(TimeSpan.FromMinutes(10));
        await s.WriteAsync("after ten minutes"u8.ToArray(), Ct);
        var buffer = new byte[64];
        Assert.Equal(17, await accepted.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(1, client.PooledConnections);
    }

    [Fact]
    public async Task Streams_pass_service_requests_to_the_physical_connection()
    {
        var network = new MemoryTransport();
        var counting = new CountingTransport(network);
        await using var client = (MultiplexingTransport)counting.WithMultiplexing();
        await using var listener = await network.WithMultiplexing().ListenAsync(PeerAddress.Parse("mem://services"), Ct);
        _ = EchoAll(listener);
        await using var s = await client.ConnectAsync(listener.LocalAddress, Ct);
        Assert.Same(s, s.GetService(typeof(ITransportStream)));
        Assert.Same(counting.Streams.Single(), s.GetService(typeof(CountingTransport.RecordingStream)));
        Assert.Equal("mem://services", s.RemoteAddress.ToString());
        Assert.Same(client.GetService(typeof(MultiplexingTransportOptions)), client.GetService(typeof(MultiplexingTransportOptions)));
        Assert.Same(network, client.GetService(typeof(MemoryTransport)));
    }

    [Fact]
    public async Task Concurrent_first_connects_to_one_peer_open_one_inner_connection()
    {
        var network = new MemoryTransport();
        var counting = new CountingTransport(network);
        await using var client = (MultiplexingTransport)counting.WithMultiplexing();
        await using var listener = await network.WithMultiplexing().ListenAsync(PeerAddress.Parse("mem://race"), Ct);
        _ = EchoAll(listener);
        var streams = await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(async () => await client.ConnectAsync(listener.LocalAddress, Ct), Ct)));
        Assert.Equal(1, counting.Connects);
        foreach (var s in streams)
        {
            await s.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_connect_its_caller_gave_up_on_is_not_joined_by_the_next_caller()
    {
        // A peer that accepts and never answers: the inner connect hangs until the test releases it.
        var hanging = new HangingTransport(new MemoryTransport());
        await using var client = (MultiplexingTransport)hanging.WithMultiplexing();
        var address = PeerAddress.Parse("mem://silent");
        using (var gaveUp = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            gaveUp.CancelAfter(TimeSpan.FromMilliseconds(50));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await client.ConnectAsync(address, gaveUp.Token));
        }

        using (var again = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            again.CancelAfter(TimeSpan.FromMilliseconds(50));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await client.ConnectAsync(address, again.Token));
        }

        // The retry started its own connect instead of waiting on the first one, which may never finish.
        Assert.Equal(2, hanging.Attempts);
        hanging.Release();
    }

    private sealed class HangingTransport(ITransport inner) : DelegatingTransport(inner)
    {
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _attempts;

        public int Attempts => Volatile.Read(ref _attempts);

        public void Release() => _release.TrySetException(new TransportException(TransportErrorKind.ConnectionRefused, "released by the test"));

        public override async ValueTask<ITransportStream> ConnectAsync(PeerAddress address, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _attempts);
            await _release.Task.WaitAsync(cancellationToken);
            throw new InvalidOperationException("unreachable");
        }
    }

    [Fact]
    public async Task On_a_warm_connection_a_stream_opens_without_a_round_trip()
    {
        // 400 ms round trips below the multiplexer: the first connect waits for the channel's acceptance (one round
        // trip); later ones take the channel opened ahead and return at once, and the server still gets each stream.
        var shaped = new MemoryTransport().WithShaping(new NetworkShapingOptions { RoundTripLatency = TimeSpan.FromMilliseconds(400) });
        await using var client = (MultiplexingTransport)shaped.WithMultiplexing();
        await using var listener = await shaped.WithMultiplexing().ListenAsync(PeerAddress.Parse("mem://warm"), Ct);
        _ = EchoAll(listener);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await using var first = await client.ConnectAsync(listener.LocalAddress, Ct);
        var firstMs = clock.Elapsed.TotalMilliseconds;
        Assert.True(firstMs >= 350, $"the first connect took {firstMs:F0} ms, less than the round trip its acceptance needs");

        await Task.Delay(600, Ct); // the spare's acceptance comes back
        clock.Restart();
        await using var second = await client.ConnectAsync(listener.LocalAddress, Ct);
        var secondMs = clock.Elapsed.TotalMilliseconds;
        Assert.True(secondMs < 200, $"the second connect took {secondMs:F0} ms: it did not take the channel opened ahead");

        await second.WriteAsync("echo"u8.ToArray(), Ct);
        await second.CompleteWritesAsync(Ct);
        var buffer = new byte[8];
        Assert.Equal(4, await second.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(1, client.PooledConnections);
    }

    [Fact]
    public async Task Over_TLS_streams_to_one_peer_share_one_socket_and_the_pinned_peer_id_keys_the_pool()
    {
        using var identity = Petals.Transport.Tcp.TlsPeerIdentity.Create();
        await using var server = (MultiplexingTransport)new Petals.Transport.Tcp.TcpTransport(new Petals.Transport.Tcp.TcpTransportOptions { Identity = identity }).WithMultiplexing();
        await using var client = (MultiplexingTransport)new Petals.Transport.Tcp.TcpTransport().WithMultiplexing();
        await using var listener = await server.ListenAsync(PeerAddress.Parse("tls://127.0.0.1:0"), Ct);
        _ = EchoAll(listener);
        Assert.Equal(identity.PeerId, listener.LocalAddress.PeerId);
        await using var a = await client.ConnectAsync(listener.LocalAddress, Ct);
        await using var b = await client.ConnectAsync(listener.LocalAddress, Ct);
        var socketA = a.GetService(typeof(System.Net.Sockets.Socket));
        Assert.NotNull(socketA);
        Assert.Same(socketA, b.GetService(typeof(System.Net.Sockets.Socket)));
        Assert.Equal(1L, client.PhysicalConnects);

        // Another peer id at the same location is another connection, and TLS refuses it: the key is not that id's.
        var wrongId = listener.LocalAddress.WithPeerId(new string('0', 64));
        var error = await Assert.ThrowsAsync<TransportException>(async () => await client.ConnectAsync(wrongId, Ct));
        Assert.Equal(TransportErrorKind.AuthenticationFailed, error.Kind);
        Assert.Equal(1, client.PooledConnections);
    }

    [Fact]
    public async Task A_channel_whose_first_frame_is_not_an_open_frame_is_cut_and_never_handed_out()
    {
        var network = new MemoryTransport();
        await using var listener = await network.WithMultiplexing().ListenAsync(PeerAddress.Parse("mem://strict"), Ct);
        var pendingAccept = listener.AcceptAsync(Ct).AsTask();

        // A raw Nerdbank peer that skips the open frame and sends a data frame (type 0, length 3) first.
        var inner = await network.ConnectAsync(listener.LocalAddress, Ct);
        await using var raw = Nerdbank.Streams.MultiplexingStream.Create(inner.AsStream(), new Nerdbank.Streams.MultiplexingStream.Options { ProtocolMajorVersion = 3 });
        var channel = raw.CreateChannel();
        await channel.Acceptance.WaitAsync(Bound, Ct);
        await channel.Output.WriteAsync(new byte[] { 0, 3, 0, 0, 0, 1, 2, 3 }, Ct);

        // The listening side closes the channel (within the bound: not a timeout) and hands nothing out.
        var cut = await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            while (true)
            {
                var read = await channel.Input.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
                if (read.IsCompleted)
                {
                    throw new InvalidOperationException("closed by the listening side");
                }

                channel.Input.AdvanceTo(read.Buffer.End);
            }
        });
        Assert.IsNotType<TimeoutException>(cut);
        Assert.False(pendingAccept.IsCompleted);
    }

    [Fact]
    public void Bad_options_are_refused_with_the_option_named()
    {
        var network = new MemoryTransport();
        Assert.Contains("MaxChannelsPerConnection", Assert.Throws<ArgumentOutOfRangeException>(() => network.WithMultiplexing(new MultiplexingTransportOptions { MaxChannelsPerConnection = 0 })).Message, StringComparison.Ordinal);
        Assert.Contains("IdleTimeout", Assert.Throws<ArgumentOutOfRangeException>(() => network.WithMultiplexing(new MultiplexingTransportOptions { IdleTimeout = TimeSpan.Zero })).Message, StringComparison.Ordinal);
        Assert.Contains("ChannelReceiveWindowBytes", Assert.Throws<ArgumentOutOfRangeException>(() => network.WithMultiplexing(new MultiplexingTransportOptions { ChannelReceiveWindowBytes = 1000 })).Message, StringComparison.Ordinal);
        Assert.Contains("CloseLinger", Assert.Throws<ArgumentOutOfRangeException>(() => network.WithMultiplexing(new MultiplexingTransportOptions { CloseLinger = TimeSpan.FromSeconds(-1) })).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UseMultiplexing_wraps_the_role_transport_with_the_configured_options()
    {
        var services = new ServiceCollection();
        var network = new MemoryTransport();
        var builder = new ClientBuilder(services);
        builder.UseMultiplexing(o => o.MaxChannelsPerConnection = 7).UseTransport(network);
        using var provider = services.BuildServiceProvider();
        var transport = provider.GetRequiredKeyedService<ITransport>(PetalsServiceKeys.Client);
        Assert.IsType<MultiplexingTransport>(transport);
        Assert.Equal(7, ((MultiplexingTransportOptions)transport.GetService(typeof(MultiplexingTransportOptions))!).MaxChannelsPerConnection);
        Assert.Same(network, transport.GetService(typeof(MemoryTransport)));
    }

    private static Task EchoAll(ITransportListener listener) => Task.Run(async () =>
    {
        while (true)
        {
            ITransportStream s;
            try
            {
                s = await listener.AcceptAsync(Ct);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
            {
                return;
            }

            _ = Task.Run(async () =>
            {
                await using (s)
                {
                    try
                    {
                        var buffer = new byte[4096];
                        int n;
                        while ((n = await s.ReadAsync(buffer, Ct)) > 0)
                        {
                            await s.WriteAsync(buffer.AsMemory(0, n), Ct);
                        }

                        await s.CompleteWritesAsync(Ct);
                    }
                    catch (TransportException)
                    {
                        // The client went away.
                    }
                }
            }, Ct);
        }
    }, Ct);

    private static async Task WaitUntil(Func<bool> condition) => await WaitUntil(() => Task.FromResult(condition()));

    private static async Task WaitUntil(Func<Task<bool>> condition)
    {
        for (var i = 0; i < 2000; i++)
        {
            if (await condition())
            {
                return;
            }

            await Task.Delay(10, Ct);
        }

        Assert.Fail("the condition did not hold within 20 s");
    }

    private sealed class ClientBuilder(IServiceCollection services) : IPetalsClientBuilder
    {
        public IServiceCollection Services { get; } = services;
    }
}
