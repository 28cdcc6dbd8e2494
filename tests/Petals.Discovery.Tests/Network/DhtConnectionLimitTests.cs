using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Discovery.Tests.Network;

/// <summary>The per-address limit of a DHT node's serving side, over TCP on 127.0.0.1.</summary>
public sealed class DhtConnectionLimitTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_connection_over_the_per_address_limit_is_aborted_at_once_with_the_reason_and_counted()
    {
        var ct = TestContext.Current.CancellationToken;
        var transport = new TcpTransport();
        await using var node = new DhtNode(DhtTestNetwork.Identity(0), new DhtNodeOptions { MaxConcurrentRequests = 4, MaxRequestsPerAddress = 1, RequestTimeout = TimeSpan.FromSeconds(30) });
        await node.StartAsync(transport, PeerAddress.Parse("tcp://127.0.0.1:0"), ct).WaitAsync(Bound, ct);

        // Two silent streams from 127.0.0.1: one holds the address's only slot, the other is aborted at once.
        await using var a = await transport.ConnectAsync(node.LocalAddress, ct).AsTask().WaitAsync(Bound, ct);
        await using var b = await transport.ConnectAsync(node.LocalAddress, ct).AsTask().WaitAsync(Bound, ct);
        var readA = DhtMessageCodec.ReadFrameAsync(a, ct).AsTask();
        var readB = DhtMessageCodec.ReadFrameAsync(b, ct).AsTask();
        var first = await Task.WhenAny(readA, readB).WaitAsync(Bound, ct);
        var refusal = await Assert.ThrowsAsync<TransportException>(() => first);
        Assert.Contains("already serves 1 requests from 127.0.0.1", refusal.Message, StringComparison.Ordinal);
        Assert.Equal(1, node.RequestsRefused);
        var (held, heldRead) = first == readA ? (b, readB) : (a, readA);
        Assert.False(heldRead.IsCompleted);

        // Once the silent stream ends, the address is served again.
        await held.CompleteWritesAsync(ct);
        try
        {
            await heldRead.WaitAsync(Bound, ct);
        }
        catch (TransportException)
        {
            // Closed without an answer: nothing was asked.
        }

        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            await using var third = await transport.ConnectAsync(node.LocalAddress, ct).AsTask().WaitAsync(Bound, ct);
            try
            {
                await third.WriteAsync(Ping(2), ct);
                await third.CompleteWritesAsync(ct);
                var pong = await DhtMessageCodec.ReadFrameAsync(third, ct).AsTask().WaitAsync(Bound, ct);
                Assert.Equal(DhtMessageType.Pong, pong!.Type);
                break;
            }
            catch (TransportException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(20, ct);
            }
        }
    }

    [Fact]
    public void The_per_address_limit_must_be_positive()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new DhtNodeOptions { MaxRequestsPerAddress = 0 }.Validate());
        Assert.Equal(nameof(DhtNodeOptions.MaxRequestsPerAddress), error.ParamName);
        Assert.Equal(8, DhtNodeOptions.Default.MaxRequestsPerAddress);
    }

    private static byte[] Ping(ulong id)
    {
        var key = DhtTestNetwork.Identity(1);
        return DhtTestKit.Frame(new DhtMessage(DhtMessageType.Ping, id, new DhtSender(key.NodeId, key.PublicKey, default)), at: DateTimeOffset.UtcNow); // the node runs on the real clock
    }
}
