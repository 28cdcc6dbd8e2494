using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Petals.Transport.Tcp;

/// <summary>
/// A peer's TLS identity: an ECDSA P-256 key in a self-signed certificate. The peer id is the lower-case hex
/// SHA-256 of the certificate's SubjectPublicKeyInfo, so a client that knows the id (from the address
/// <c>tls://{peerId}@host:port</c>) checks the server's certificate without any certificate authority.
/// </summary>
/// <remarks>
/// <para>Only the server proves its identity; clients stay anonymous at this layer.</para>
/// <para>One key per peer: <see cref="FromPkcs8"/> and <see cref="FromPrivateKey"/> make the certificate from an
/// existing P-256 key, e.g. the key of the peer's DHT identity, whose node id (the first 20 bytes of the same SHA-256)
/// is then <see cref="ShortPeerId"/>; a client accepts either form as the expected id (see
/// <see cref="AuthenticatedPeer"/>).</para>
/// </remarks>
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

    /// <summary>The short form of <see cref="PeerId"/>: its first 40 hex digits (the DHT node id of the same key).</summary>
    public string ShortPeerId => PeerId[..AuthenticatedPeer.ShortPeerIdLength];

    /// <summary>Creates a fresh identity with a new key.</summary>
    /// <param name="validity">How long the certificate is valid; default one year.</param>
    /// <returns>The identity; the caller disposes it.</returns>
    public static TlsPeerIdentity Create(TimeSpan? validity = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return FromPrivateKey(key, validity);
    }

    /// <summary>
    /// Creates an identity whose certificate is signed by, and presents, <paramref name="key"/>: the peer id is the hash
    /// of that key, so a peer that already has a P-256 key (its DHT identity) proves the same identity over TLS.
    /// </summary>
    /// <param name="key">A P-256 ECDSA key with its private part; copied, the caller keeps ownership.</param>
    /// <param name="validity">How long the certificate is valid; default one year (a new one is made at each start).</param>
    /// <returns>The identity; the caller disposes it.</returns>
    /// <exception cref="ArgumentException">The key is not on the P-256 curve or has no private part.</exception>
    public static TlsPeerIdentity FromPrivateKey(ECDsa key, TimeSpan? validity = null)
    {
        ArgumentNullException.ThrowIfNull(key);
        var curve = key.ExportParameters(includePrivateParameters: false).Curve;
        if (key.KeySize != 256 || !curve.IsNamed
            || !(curve.Oid.Value == ECCurve.NamedCurves.nistP256.Oid.Value || curve.Oid.FriendlyName is "nistP256" or "ECDSA_P256"))
        {
            throw new ArgumentException($"A TLS peer identity is a P-256 key, not a {key.KeySize}-bit key on {curve.Oid?.FriendlyName ?? curve.Oid?.Value ?? "an unnamed curve"}.", nameof(key));
        }

        var request = new CertificateRequest("CN=petals-peer", key, HashAlgorithmName.SHA256);
        var now = DateTimeOffset.UtcNow;
        X509Certificate2 ephemeral;
        try
        {
            ephemeral = request.CreateSelfSigned(now.AddMinutes(-5), now + (validity ?? TimeSpan.FromDays(365)));
        }
        catch (CryptographicException e)
        {
            throw new ArgumentException($"The key cannot sign (no private part?); a TLS identity needs its private key: {e.Message}", nameof(key), e);
        }

        using var owned = ephemeral;

        // Round-trip through PKCS#12 so the private key is usable by the platform's TLS stack.
        var pfx = ephemeral.Export(X509ContentType.Pkcs12);
        return new TlsPeerIdentity(X509CertificateLoader.LoadPkcs12(pfx, password: null));
    }

    /// <summary>Creates an identity from a PKCS#8 private key (DER), e.g. the one a DHT identity exports.</summary>
    /// <param name="pkcs8">The DER bytes of a PKCS#8 PrivateKeyInfo holding a P-256 key.</param>
    /// <param name="validity">How long the certificate is valid; default one year.</param>
    /// <returns>The identity; the caller disposes it.</returns>
    /// <exception cref="ArgumentException">The bytes are not a PKCS#8 P-256 key.</exception>
    public static TlsPeerIdentity FromPkcs8(ReadOnlySpan<byte> pkcs8, TimeSpan? validity = null)
    {
        using var key = ECDsa.Create();
        try
        {
            key.ImportPkcs8PrivateKey(pkcs8, out var read);
            if (read != pkcs8.Length)
            {
                throw new ArgumentException($"The PKCS#8 key is followed by {pkcs8.Length - read} extra bytes.", nameof(pkcs8));
            }
        }
        catch (CryptographicException e)
        {
            throw new ArgumentException($"The bytes are not a PKCS#8 private key: {e.Message}", nameof(pkcs8), e);
        }

        return FromPrivateKey(key, validity);
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
