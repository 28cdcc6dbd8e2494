using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Transport.Tcp.Tests;

[CollectionDefinition(nameof(SerialAllocationTests), DisableParallelization = true)]
public sealed class SerialAllocationTests;

/// <summary>
/// Steady-state request/reply traffic must stay near allocation-free (the generation hot path sends one message
/// per token). Reads wait on a reusable completion source and small writes skip the state machine when the socket
/// takes them at once; what remains (about 380 bytes per round trip of two messages on this machine, raw sockets:
/// under 10) is thread-pool work items and a send state machine when a send really waits. No buffers are
/// allocated per message; the bound catches any per-message buffer or copy creeping in.
/// </summary>
[Collection(nameof(SerialAllocationTests))]
public sealed class TcpAllocationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Ping_pong_allocates_no_buffers_per_message()
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        await using var client = await transport.ConnectAsync(listener.LocalAddress, Ct);
        await using var server = await listener.AcceptAsync(Ct);
        var message = new byte[256];
        var clientBuffer = new byte[256];
        var serverBuffer = new byte[256];

        async Task RoundTrips(int count)
        {
            for (var i = 0; i < count; i++)
            {
                await client.WriteAsync(message, CancellationToken.None);
                await ReadExactly(server, serverBuffer);
                await server.WriteAsync(serverBuffer, CancellationToken.None);
                await ReadExactly(client, clientBuffer);
            }
        }

        await RoundTrips(200); // warm up pools and JIT
        const int measured = 2000;
        var before = GC.GetTotalAllocatedBytes(precise: true);
        await RoundTrips(measured);
        var perRoundTrip = (GC.GetTotalAllocatedBytes(precise: true) - before) / (double)measured;
        TestContext.Current.TestOutputHelper?.WriteLine($"{perRoundTrip:F1} bytes allocated per round trip (2 messages), whole process");
        Assert.True(perRoundTrip < 1000, $"{perRoundTrip:F1} bytes allocated per round trip");
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private static async ValueTask ReadExactly(ITransportStream stream, byte[] buffer)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(read), CancellationToken.None);
            Assert.True(n > 0, "unexpected end of stream");
            read += n;
        }
    }
}
