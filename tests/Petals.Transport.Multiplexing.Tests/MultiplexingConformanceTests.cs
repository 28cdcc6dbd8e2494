using System.Net;
using System.Net.Sockets;
using Petals.Testing.Conformance;
using Petals.Testing.Transport;
using Petals.Transport.Tcp;

namespace Petals.Transport.Multiplexing.Tests;

/// <summary>The multiplexing decorator over the in-memory transport keeps every transport behaviour.</summary>
public sealed class MultiplexedMemoryTransportConformanceTests : TransportConformanceTests
{
    protected override int LargePayloadBytes => 16 << 20;

    protected override ValueTask<TransportUnderTest> CreateTransportAsync()
    {
        var network = new MemoryTransport();
        return ValueTask.FromResult(new TransportUnderTest(network.WithMultiplexing(), network.WithMultiplexing(), PeerAddress.Parse("mem://mux-server")));
    }

    protected override ValueTask<PeerAddress> GetDeadAddressAsync() => ValueTask.FromResult(PeerAddress.Parse("mem://nobody-listens-here"));
}

/// <summary>The multiplexing decorator over TLS (TCP, certificate pinned to the peer id) keeps every transport behaviour.</summary>
public sealed class MultiplexedTlsTransportConformanceTests : TransportConformanceTests, IDisposable
{
    private readonly TlsPeerIdentity _identity = TlsPeerIdentity.Create();

    protected override int LargePayloadBytes => 16 << 20;

    protected override ValueTask<TransportUnderTest> CreateTransportAsync()
    {
        var server = new TcpTransport(new TcpTransportOptions { Identity = _identity }).WithMultiplexing();
        var client = new TcpTransport().WithMultiplexing();
        return ValueTask.FromResult(new TransportUnderTest(client, server, PeerAddress.Parse("tls://127.0.0.1:0")));
    }

    protected override ValueTask<PeerAddress> GetDeadAddressAsync()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        return ValueTask.FromResult(PeerAddress.FromHostPort("tls", "127.0.0.1", port, _identity.PeerId));
    }

    public void Dispose() => _identity.Dispose();
}
