using System.Net.Sockets;

namespace Petals.Transport.Tcp.Tests;

/// <summary>The listener's bounds on descriptors: the open-connection cap and the accept back-off.</summary>
public sealed class TcpListenerLimitTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task At_its_open_connection_cap_the_listener_accepts_nothing_more_until_an_accepted_stream_is_disposed()
    {
        var transport = new TcpTransport(new TcpTransportOptions { MaxOpenConnections = 2 });
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        var impl = Assert.IsType<TcpListenerImpl>(listener);
        var client = new TcpTransport();
        await using var c1 = await client.ConnectAsync(listener.LocalAddress, Ct);
        await using var c2 = await client.ConnectAsync(listener.LocalAddress, Ct);
        await using var c3 = await client.ConnectAsync(listener.LocalAddress, Ct); // completed by the kernel, in the backlog
        var s1 = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        var s2 = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);

        var third = listener.AcceptAsync(Ct).AsTask();
        var deadline = DateTime.UtcNow + Bound;
        while (impl.OpenLimitWaits == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the listener never reached its cap");
            await Task.Delay(10, Ct);
        }

        Assert.False(third.IsCompleted);
        await s1.DisposeAsync();
        var s3 = await third.WaitAsync(Bound, Ct);
        await s3.DisposeAsync();
        await s2.DisposeAsync();
    }

    [Theory]
    [InlineData(SocketError.TooManyOpenSockets, true)]
    [InlineData(SocketError.NoBufferSpaceAvailable, true)]
    [InlineData(SocketError.ConnectionAborted, false)]
    [InlineData(SocketError.ConnectionReset, false)]
    public void Only_descriptor_and_buffer_exhaustion_makes_the_accept_loop_back_off(SocketError error, bool backsOff) =>
        Assert.Equal(backsOff, TcpListenerImpl.IsResourceExhaustion(error));

    [Fact]
    public void The_open_connection_cap_must_be_positive_and_defaults_below_the_descriptor_limit()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TcpTransport(new TcpTransportOptions { MaxOpenConnections = 0 }));
        var cap = new TcpTransportOptions().MaxOpenConnections;
        if (DescriptorLimit.Soft is { } soft)
        {
            Assert.True(cap < soft, $"{cap} open connections for {soft} descriptors");
        }

        Assert.True(cap >= 16);
    }
}
