using Petals.Testing.Transport;
using Petals.Transport;

namespace Petals.Testing.Tests.Transport;

/// <summary>The stalled-peer and abort-on-demand faults of the shaping decorator.</summary>
public sealed class ShapingFaultTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_stalled_peer_moves_no_bytes_either_way_until_the_stall_ends()
    {
        var options = new NetworkShapingOptions();
        var transport = new MemoryTransport().WithShaping(options);
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://stalled"), Ct);
        await using var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct);

        // Listed with a peer id: compared without it.
        options.StalledAddresses.Add(listener.LocalAddress.WithPeerId("12D3KooWtest"));
        await client.WriteAsync(new byte[] { 1, 2, 3 }, Ct).AsTask().WaitAsync(Bound, Ct);
        await server.WriteAsync(new byte[] { 9 }, Ct).AsTask().WaitAsync(Bound, Ct);
        var toServer = new byte[16];
        var toClient = new byte[16];
        var serverRead = server.ReadAsync(toServer, Ct).AsTask();
        var clientRead = client.ReadAsync(toClient, Ct).AsTask();
        await AssertStillPending(serverRead, clientRead);

        options.StalledAddresses.Remove(listener.LocalAddress);
        Assert.Equal(3, await serverRead.WaitAsync(Bound, Ct));
        Assert.Equal(new byte[] { 1, 2, 3 }, toServer[..3]);
        Assert.Equal(1, await clientRead.WaitAsync(Bound, Ct));
        Assert.Equal(9, toClient[0]);
    }

    [Fact]
    public async Task A_stall_holds_back_bytes_an_unshaped_peer_sends_and_a_read_already_waiting_takes()
    {
        // Only the client is shaped: the server's bytes reach the client's inner stream, and the shaper must hold them.
        var memory = new MemoryTransport();
        var options = new NetworkShapingOptions();
        var shaped = memory.WithShaping(options);
        await using var listener = await memory.ListenAsync(PeerAddress.Parse("mem://plain"), Ct);
        await using var client = await shaped.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct);

        var buffer = new byte[16];
        var waiting = client.ReadAsync(buffer, Ct).AsTask(); // already inside the inner read when the stall begins
        await Task.Delay(50, Ct);
        options.StalledAddresses.Add(listener.LocalAddress);
        await server.WriteAsync(new byte[] { 4, 5 }, Ct).AsTask().WaitAsync(Bound, Ct);
        await client.WriteAsync(new byte[] { 6 }, Ct).AsTask().WaitAsync(Bound, Ct);
        var serverRead = server.ReadAsync(new byte[16], Ct).AsTask();
        await AssertStillPending(waiting, serverRead);

        options.StalledAddresses.Clear();
        Assert.Equal(2, await waiting.WaitAsync(Bound, Ct));
        Assert.Equal(new byte[] { 4, 5 }, buffer[..2]);
        Assert.Equal(1, await serverRead.WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task Bytes_held_by_a_stall_survive_a_cancelled_read()
    {
        var memory = new MemoryTransport();
        var options = new NetworkShapingOptions();
        var shaped = memory.WithShaping(options);
        await using var listener = await memory.ListenAsync(PeerAddress.Parse("mem://plain"), Ct);
        await using var client = await shaped.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct);

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var buffer = new byte[16];
        var waiting = client.ReadAsync(buffer, cts.Token).AsTask();
        await Task.Delay(50, Ct);
        options.StalledAddresses.Add(listener.LocalAddress);
        await server.WriteAsync(new byte[] { 7, 8, 9 }, Ct).AsTask().WaitAsync(Bound, Ct);
        await Task.Delay(100, Ct);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(Bound, Ct));

        options.StalledAddresses.Remove(listener.LocalAddress);
        var again = new byte[2];
        Assert.Equal(2, await client.ReadAsync(again, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(new byte[] { 7, 8 }, again);
        Assert.Equal(1, await client.ReadAsync(again, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(9, again[0]);
    }

    [Fact]
    public async Task Writes_to_a_stalled_peer_buffer_up_to_the_limit_then_wait()
    {
        var options = new NetworkShapingOptions { MaxBufferedBytes = 64 * 1024 };
        var transport = new MemoryTransport().WithShaping(options);
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://stalled"), Ct);
        await using var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct);

        options.StalledAddresses.Add(listener.LocalAddress);
        await client.WriteAsync(new byte[64 * 1024], Ct).AsTask().WaitAsync(Bound, Ct);
        var blocked = client.WriteAsync(new byte[1], Ct).AsTask();
        await AssertStillPending(blocked);

        options.StalledAddresses.Remove(listener.LocalAddress);
        await blocked.WaitAsync(Bound, Ct);
        await client.CompleteWritesAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        long total = 0;
        var buffer = new byte[16 * 1024];
        int n;
        while ((n = await server.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct)) > 0)
        {
            total += n;
        }

        Assert.Equal((64 * 1024) + 1, total);
    }

    [Fact]
    public async Task A_stall_affects_only_the_listed_address_and_new_connects_to_it_succeed_silently()
    {
        var options = new NetworkShapingOptions();
        var transport = new MemoryTransport().WithShaping(options);
        await using var stalled = await transport.ListenAsync(PeerAddress.Parse("mem://a"), Ct);
        await using var healthy = await transport.ListenAsync(PeerAddress.Parse("mem://b"), Ct);
        options.StalledAddresses.Add(stalled.LocalAddress);

        await using var toStalled = await transport.ConnectAsync(stalled.LocalAddress, Ct).AsTask().WaitAsync(Bound, Ct);
        await using var stalledEnd = await stalled.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await using var toHealthy = await transport.ConnectAsync(healthy.LocalAddress, Ct);
        await using var healthyEnd = await healthy.AcceptAsync(Ct);

        await toStalled.WriteAsync(new byte[] { 1 }, Ct);
        await toHealthy.WriteAsync(new byte[] { 2 }, Ct);
        var buffer = new byte[4];
        Assert.Equal(1, await healthyEnd.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(2, buffer[0]);
        var silent = stalledEnd.ReadAsync(new byte[4], Ct).AsTask();
        await AssertStillPending(silent);
        options.StalledAddresses.Remove(stalled.LocalAddress);
        Assert.Equal(1, await silent.WaitAsync(Bound, Ct));
    }

    [Fact]
    public async Task Aborting_a_stalled_stream_wakes_its_waiting_read_with_the_abort()
    {
        var options = new NetworkShapingOptions();
        var transport = new MemoryTransport().WithShaping(options);
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("mem://stalled"), Ct);
        await using var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct);

        options.StalledAddresses.Add(listener.LocalAddress);
        var read = client.ReadAsync(new byte[4], Ct).AsTask();
        await AssertStillPending(read);
        Assert.Equal(1, transport.AbortStreams(listener.LocalAddress, "fault injected: server killed"));
        var error = await Assert.ThrowsAsync<TransportException>(() => read.WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.Aborted, error.Kind);
        Assert.Contains("aborted locally: fault injected: server killed", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AbortStreams_aborts_both_ends_of_exactly_the_streams_connected_to_that_address()
    {
        var options = new NetworkShapingOptions();
        var transport = new MemoryTransport().WithShaping(options);
        await using var a = await transport.ListenAsync(PeerAddress.Parse("mem://a"), Ct);
        await using var b = await transport.ListenAsync(PeerAddress.Parse("mem://b"), Ct);
        await using var toA1 = await transport.ConnectAsync(a.LocalAddress, Ct);
        await using var atA1 = await a.AcceptAsync(Ct);
        await using var toA2 = await transport.ConnectAsync(a.LocalAddress.WithPeerId("12D3KooWpeer"), Ct);
        await using var atA2 = await a.AcceptAsync(Ct);
        var toA3 = await transport.ConnectAsync(a.LocalAddress, Ct);
        await using (var atA3 = await a.AcceptAsync(Ct))
        {
            toA3.Abort("closed by the test");
            await toA3.DisposeAsync(); // disposed: not counted
        }

        await using var toB = await transport.ConnectAsync(b.LocalAddress, Ct);
        await using var atB = await b.AcceptAsync(Ct);

        Assert.Equal(2, transport.AbortStreams(a.LocalAddress, "fault injected: server killed"));

        foreach (var local in new[] { toA1, toA2 })
        {
            var error = await Assert.ThrowsAsync<TransportException>(async () => await local.WriteAsync(new byte[] { 1 }, Ct).AsTask().WaitAsync(Bound, Ct));
            Assert.Equal(TransportErrorKind.Aborted, error.Kind);
            Assert.Contains("aborted locally: fault injected: server killed", error.Message, StringComparison.Ordinal);
        }

        foreach (var remote in new[] { atA1, atA2 })
        {
            var error = await Assert.ThrowsAsync<TransportException>(async () => await remote.ReadAsync(new byte[4], Ct).AsTask().WaitAsync(Bound, Ct));
            Assert.Equal(TransportErrorKind.Aborted, error.Kind);
            Assert.Contains("aborted by peer: fault injected: server killed", error.Message, StringComparison.Ordinal);
        }

        // The other address's stream is untouched, and aborting again finds nothing left open.
        await toB.WriteAsync(new byte[] { 5 }, Ct);
        var buffer = new byte[4];
        Assert.Equal(1, await atB.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(5, buffer[0]);
        Assert.Equal(0, transport.AbortStreams(a.LocalAddress, "again"));
        Assert.Equal(0, transport.AbortStreams(PeerAddress.Parse("mem://nobody"), "none"));

        // Connects are still accepted (refusing them is RefusedAddresses' job).
        await using var after = await transport.ConnectAsync(a.LocalAddress, Ct);
        await using var afterEnd = await a.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Same(transport, ((ITransport)transport).GetService(typeof(ShapingTransport)));
    }

    private static async Task AssertStillPending(params Task[] tasks)
    {
        // Give the shaper real time to (wrongly) deliver.
        await Task.Delay(150, Ct);
        foreach (var task in tasks)
        {
            Assert.False(task.IsCompleted, "bytes moved through a stalled stream");
        }
    }
}
