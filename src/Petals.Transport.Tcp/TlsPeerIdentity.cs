using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Petals.Transport.Tcp;

/// <summary>
/// A peer's TLS identity: an ECDSA P-256 key in a self-signed certificate. The peer id is the lower-case hex
/// SHA-256 of the certificate's SubjectPublicKeyInfo, so a client that knows the id (from the address
/// <c>tls://{peerId}@host:port</c>) checks the server's certificate without any certificate authority.
/// </summary>
/// <remarks>Only the server proves its identity; clients stay anonymous at this layer.</remarks>
public sealed class TlsPeerIdentity : IDisposable
{
    private TlsPeerIdentity(X509Certificate2 certificate)
    {
        Certificate = certificate;
        PeerId = ComputePeerId(certificate);
    }

    /// <summary>The certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The peer id: lower-case hex SHA-256 of the certificate's public key (64 characters).</summary>
    public string PeerId { get; }

    /// <summary>Creates a fresh identity with a new key.</summary>
    /// <param name="validity">How long the certificate is valid; default one year.</param>
    /// <returns>The identity; the caller disposes it.</returns>
    public static TlsPeerIdentity Create(TimeSpan? validity = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=petals-peer", key, HashAlgorithmName.SHA256);
        var now = DateTimeOffset.UtcNow;
        using var ephemeral = request.CreateSelfSigned(now.AddMinutes(-5), now + (validity ?? TimeSpan.FromDays(365)));

        // Round-trip through PKCS#12 so the private key is usable by the platform's TLS stack.
        var pfx = ephemeral.Export(X509ContentType.Pkcs12);
        return new TlsPeerIdentity(X509CertificateLoader.LoadPkcs12(pfx, password: null));
    }

    /// <summary>Loads an identity from a certificate that has a private key (e.g. one persisted by the caller).</summary>
    /// <param name="certificate">The certificate with its private key; the identity takes ownership.</param>
    /// <returns>The identity.</returns>
    /// <exception cref="ArgumentException">The certificate has no private key.</exception>
    public static TlsPeerIdentity FromCertificate(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        if (!certificate.HasPrivateKey)
        {
            throw new ArgumentException($"The certificate '{certificate.Subject}' has no private key; a TLS identity needs one.", nameof(certificate));
        }

        return new TlsPeerIdentity(certificate);
    }

    /// <summary>The peer id a certificate stands for: lower-case hex SHA-256 of its SubjectPublicKeyInfo.</summary>
    /// <param name="certificate">Any certificate.</param>
    /// <returns>64 lower-case hex digits.</returns>
    public static string ComputePeerId(X509Certificate certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        if (certificate is X509Certificate2 cert2)
        {
            return Convert.ToHexStringLower(SHA256.HashData(cert2.PublicKey.ExportSubjectPublicKeyInfo()));
        }

        using var cert = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return Convert.ToHexStringLower(SHA256.HashData(cert.PublicKey.ExportSubjectPublicKeyInfo()));
    }

    /// <inheritdoc/>
    public void Dispose() => Certificate.Dispose();
}
