using System.Security.Cryptography.X509Certificates;

namespace Petals.Transport.Quic;

/// <summary>Settings of a <see cref="QuicTransport"/>.</summary>
public sealed class QuicTransportOptions
{
    /// <summary>The certificate (with private key) a listener presents; required to listen. Its peer id is
    /// <see cref="QuicTransport.ComputePeerId"/> of it. Default null.</summary>
    public X509Certificate2? ServerCertificate { get; set; }

    /// <summary>How long a connect (QUIC + TLS handshake + stream open) may take before it fails with <see cref="TransportErrorKind.Timeout"/>. Default 10 seconds.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long an idle connection lives. Default 2 minutes.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(2);
}
