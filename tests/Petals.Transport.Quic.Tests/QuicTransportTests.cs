using System.Net;
using System.Net.Sockets;
using System.Runtime.Versioning;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Petals.Testing.Conformance;
using Petals.Transport;
using Petals.Transport.Quic;

namespace Petals.Transport.Quic.Tests;

[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("macos")]
public sealed class QuicTransportConformanceTests : TransportConformanceTests, IDisposable
{
    private readonly X509Certificate2 _certificate = TestCertificate.Create();

    protected override string? SkipReason => QuicTransport.IsSupported ? null : QuicTransport.UnsupportedMessage;

    protected override bool CarriesAbortReason => false;

    protected override int LargePayloadBytes => 32 << 20;

    protected override ValueTask<TransportUnderTest> CreateTransportAsync()
    {
        var server = new QuicTransport(new QuicTransportOptions { ServerCertificate = _certificate });
        var client = new QuicTransport();
        return ValueTask.FromResult(new TransportUnderTest(client, server, PeerAddress.Parse("quic://127.0.0.1:0")));
    }

    protected override ValueTask<PeerAddress> GetDeadAddressAsync()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        return ValueTask.FromResult(PeerAddress.FromHostPort("quic", "127.0.0.1", port, QuicTransport.ComputePeerId(_certificate)));
    }

    public void Dispose() => _certificate.Dispose();
}

[SupportedOSPlatform("linux")]
[SupportedOSPlatform("windows")]
[SupportedOSPlatform("macos")]
public sealed class QuicAvailabilityTests
{
    [Fact]
    public void Choosing_quic_where_it_is_unsupported_names_the_missing_library()
    {
        if (QuicTransport.IsSupported)
        {
            Assert.Skip("QUIC is supported on this machine (libmsquic present); the unsupported path cannot be observed.");
        }

        var error = Assert.Throws<PlatformNotSupportedException>(() => new QuicTransport());
        Assert.Contains("libmsquic", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Alpn_is_petals_1() => Assert.Equal("petals/1", QuicTransport.Alpn.ToString());

    [Fact]
    public void Peer_id_is_the_hex_sha256_of_the_public_key()
    {
        using var certificate = TestCertificate.Create();
        var expected = Convert.ToHexStringLower(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));
        Assert.Equal(expected, QuicTransport.ComputePeerId(certificate));
        Assert.Equal(64, expected.Length);
    }
}

internal static class TestCertificate
{
    public static X509Certificate2 Create()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=petals-peer", key, HashAlgorithmName.SHA256);
        using var ephemeral = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), password: null);
    }
}
