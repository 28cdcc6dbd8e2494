using System.Net;
using System.Net.Sockets;
using Petals.Testing.Conformance;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Transport.Tcp.Tests;

public sealed class TcpTransportConformanceTests : TransportConformanceTests
{
    protected override ValueTask<TransportUnderTest> CreateTransportAsync()
    {
        var transport = new TcpTransport();
        return ValueTask.FromResult(new TransportUnderTest(transport, transport, PeerAddress.Parse("tcp://127.0.0.1:0")));
    }

    protected override ValueTask<PeerAddress> GetDeadAddressAsync() => ValueTask.FromResult(DeadPort.Address("tcp"));
}

public sealed class TlsTransportConformanceTests : TransportConformanceTests, IDisposable
{
    private readonly TlsPeerIdentity _identity = TlsPeerIdentity.Create();

    protected override int LargePayloadBytes => 32 << 20;

    protected override ValueTask<TransportUnderTest> CreateTransportAsync()
    {
        var server = new TcpTransport(new TcpTransportOptions { Identity = _identity });
        var client = new TcpTransport();
        return ValueTask.FromResult(new TransportUnderTest(client, server, PeerAddress.Parse("tls://127.0.0.1:0")));
    }

    protected override ValueTask<PeerAddress> GetDeadAddressAsync() => ValueTask.FromResult(DeadPort.Address("tls", _identity.PeerId));

    public void Dispose() => _identity.Dispose();
}

/// <summary>The shaper over real TCP: the decorator must keep every transport's behaviour.</summary>
public sealed class ShapedTcpTransportConformanceTests : TransportConformanceTests
{
    protected override int LargePayloadBytes => 16 << 20;

    protected override ValueTask<TransportUnderTest> CreateTransportAsync()
    {
        var options = new Petals.Testing.Transport.NetworkShapingOptions
        {
            RoundTripLatency = TimeSpan.FromMilliseconds(2),
            Jitter = TimeSpan.FromMilliseconds(1),
            Seed = 11,
        };
        var transport = Petals.Testing.Transport.TransportShapingExtensions.WithShaping(new TcpTransport(), options);
        return ValueTask.FromResult(new TransportUnderTest(transport, transport, PeerAddress.Parse("tcp://127.0.0.1:0")));
    }

    protected override ValueTask<PeerAddress> GetDeadAddressAsync() => ValueTask.FromResult(DeadPort.Address("tcp"));
}

internal static class DeadPort
{
    /// <summary>A loopback port that was free a moment ago (bound, read, closed).</summary>
    public static PeerAddress Address(string scheme, string? peerId = null)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        return PeerAddress.FromHostPort(scheme, "127.0.0.1", port, peerId);
    }
}
