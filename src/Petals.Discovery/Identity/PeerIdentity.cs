using System.Security.Cryptography;
using System.Text;

namespace Petals.Discovery;

/// <summary>
/// A peer's long-lived ECDSA P-256 key pair. Its <see cref="NodeId"/> is derived from the public key, so every record
/// a peer signs is bound to its id and nobody else can sign under that id. Persisted as an unencrypted PKCS#8 PEM key
/// file (<c>-----BEGIN PRIVATE KEY-----</c>) written owner-read/write only where the OS supports Unix permissions,
/// so a bootstrap node keeps a stable id (and address) across restarts.
/// </summary>
/// <remarks>Signing and verification are thread-safe. Dispose to release the private key.</remarks>
public sealed class PeerIdentity : IDisposable
{
    /// <summary>The size in bytes of a signature: IEEE P1363 <c>r || s</c> for P-256 (64).</summary>
    public const int SignatureSize = 64;

    /// <summary>The largest key file <see cref="Load"/> reads (16 KiB); a P-256 PKCS#8 PEM is about 250 bytes.</summary>
    public const int MaxKeyFileBytes = 16 * 1024;

    private const string PemLabel = "PRIVATE KEY";

    private readonly ECDsa _key;
    private readonly byte[] _publicKey;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, ulong> _puzzleSolutions = new();

    private PeerIdentity(ECDsa key)
    {
        _key = key;
        _publicKey = key.ExportSubjectPublicKeyInfo();
        NodeId = NodeId.FromPublicKey(_publicKey);
    }

    /// <summary>The node id: the first 20 bytes of SHA-256 over <see cref="PublicKey"/>.</summary>
    public NodeId NodeId { get; }

    /// <summary>The public key as DER-encoded SubjectPublicKeyInfo (91 bytes for P-256).</summary>
    public ReadOnlyMemory<byte> PublicKey => _publicKey;

    /// <summary>Creates a fresh random identity.</summary>
    public static PeerIdentity Generate() => new(ECDsa.Create(ECCurve.NamedCurves.nistP256));

    /// <summary>Creates an identity from a PKCS#8 private key (DER).</summary>
    /// <param name="pkcs8">The DER bytes of a PKCS#8 PrivateKeyInfo holding a P-256 key.</param>
    /// <exception cref="CryptographicException">The bytes are not a PKCS#8 P-256 key.</exception>
    public static PeerIdentity FromPkcs8(ReadOnlySpan<byte> pkcs8)
    {
        var key = ECDsa.Create();
        try
        {
            key.ImportPkcs8PrivateKey(pkcs8, out var read);
            if (read != pkcs8.Length)
            {
                throw new CryptographicException($"The PKCS#8 key is followed by {pkcs8.Length - read} extra bytes.");
            }

            EnsureP256(key);
            return new PeerIdentity(key);
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The identity's solution of the DHT identity puzzle at <paramref name="difficulty"/>: the smallest nonce such that
    /// SHA-256("petals-dht-puzzle-v1\0" ‖ <see cref="PublicKey"/> ‖ nonce as u64 LE) starts with
    /// <paramref name="difficulty"/> zero bits (about 2^difficulty hashes; docs/dht-protocol.md). Deterministic, so it
    /// needs no place in the key file: it is solved once per process (memoized) and a key file of any age keeps working.
    /// </summary>
    /// <param name="difficulty">The leading zero bits, 0 to 40.</param>
    /// <returns>The nonce a DHT node sends beside its public key.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="difficulty"/> is out of range.</exception>
    public ulong SolvePuzzle(int difficulty)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(difficulty);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(difficulty, IdentityPuzzle.MaxDifficulty);
        return _puzzleSolutions.GetOrAdd(difficulty, static (d, key) => IdentityPuzzle.Solve(key, d), _publicKey);
    }

    /// <summary>The private key as PKCS#8 DER (keep it secret).</summary>
    public byte[] ExportPkcs8() => _key.ExportPkcs8PrivateKey();

    /// <summary>Signs <paramref name="data"/> with SHA-256; the result is <see cref="SignatureSize"/> bytes (IEEE P1363).</summary>
    /// <param name="data">The bytes to sign.</param>
    public byte[] Sign(ReadOnlySpan<byte> data) => _key.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);

    /// <summary>Verifies a signature made by this identity.</summary>
    /// <param name="data">The signed bytes.</param>
    /// <param name="signature">The IEEE P1363 signature.</param>
    /// <returns>Whether the signature is valid.</returns>
    public bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature) =>
        signature.Length == SignatureSize && _key.VerifyData(data, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);

    /// <summary>
    /// Verifies <paramref name="signature"/> over <paramref name="data"/> against a P-256 public key given as
    /// SubjectPublicKeyInfo. Malformed keys and signatures give false, never an exception.
    /// </summary>
    /// <param name="subjectPublicKeyInfo">The signer's DER SubjectPublicKeyInfo.</param>
    /// <param name="data">The signed bytes.</param>
    /// <param name="signature">The IEEE P1363 signature (64 bytes).</param>
    /// <returns>Whether the key is a valid P-256 key and the signature verifies.</returns>
    public static bool Verify(ReadOnlySpan<byte> subjectPublicKeyInfo, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (signature.Length != SignatureSize)
        {
            return false;
        }

        using var key = TryImportPublicKey(subjectPublicKeyInfo);
        return key is not null && key.VerifyData(data, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
    }

    /// <summary>Whether <paramref name="subjectPublicKeyInfo"/> is exactly one well-formed P-256 SubjectPublicKeyInfo.</summary>
    /// <param name="subjectPublicKeyInfo">The DER bytes.</param>
    public static bool IsValidPublicKey(ReadOnlySpan<byte> subjectPublicKeyInfo)
    {
        using var key = TryImportPublicKey(subjectPublicKeyInfo);
        return key is not null;
    }

    /// <summary>
    /// Writes the private key to <paramref name="path"/> as PKCS#8 PEM, atomically (a temporary file renamed over the
    /// target) and, on Unix, readable and writable by the owner only (0600).
    /// </summary>
    /// <param name="path">The key file.</param>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        var pkcs8 = ExportPkcs8();
        var pem = PemEncoding.WriteString(PemLabel, pkcs8);
        CryptographicOperations.ZeroMemory(pkcs8);
        var temporary = full + ".tmp-" + Guid.NewGuid().ToString("N");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        try
        {
            using (var stream = new FileStream(temporary, options))
            {
                var bytes = Encoding.ASCII.GetBytes(pem + "\n");
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>Reads a key file written by <see cref="Save"/> (or any unencrypted PKCS#8 PEM P-256 key).</summary>
    /// <param name="path">The key file.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">
    /// The file is empty, larger than <see cref="MaxKeyFileBytes"/>, holds no complete PEM block (e.g. truncated),
    /// a block with another label, invalid base64, or a key that is not a PKCS#8 P-256 private key; the message names
    /// the file and the fault.
    /// </exception>
    public static PeerIdentity Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new FileNotFoundException($"Key file '{path}' does not exist.", path);
        }

        if (info.Length == 0)
        {
            throw new InvalidDataException($"Key file '{path}' is empty.");
        }

        if (info.Length > MaxKeyFileBytes)
        {
            throw new InvalidDataException($"Key file '{path}' is {info.Length} bytes; a key file is at most {MaxKeyFileBytes} bytes.");
        }

        var text = File.ReadAllText(path, Encoding.ASCII);
        if (!PemEncoding.TryFind(text, out var fields))
        {
            throw new InvalidDataException($"Key file '{path}' holds no complete PEM block (-----BEGIN {PemLabel}----- … -----END {PemLabel}-----); it may be truncated.");
        }

        var label = text[fields.Label];
        if (label != PemLabel)
        {
            throw new InvalidDataException($"Key file '{path}' holds a '{label}' PEM block; expected an unencrypted '{PemLabel}' (PKCS#8).");
        }

        var der = new byte[fields.DecodedDataLength];
        if (!Convert.TryFromBase64Chars(text.AsSpan()[fields.Base64Data], der, out var written) || written != der.Length)
        {
            throw new InvalidDataException($"Key file '{path}': the PEM block's base64 is invalid.");
        }

        try
        {
            return FromPkcs8(der);
        }
        catch (CryptographicException e)
        {
            throw new InvalidDataException($"Key file '{path}' does not hold a valid PKCS#8 ECDSA P-256 private key: {e.Message}", e);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(der);
        }
    }

    /// <summary>Loads the key file at <paramref name="path"/>, or generates an identity and saves it there when the file does not exist.</summary>
    /// <param name="path">The key file.</param>
    /// <exception cref="InvalidDataException">The file exists but is not a valid key file (it is never overwritten).</exception>
    public static PeerIdentity LoadOrCreate(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path))
        {
            return Load(path);
        }

        var identity = Generate();
        identity.Save(path);
        return identity;
    }

    /// <inheritdoc/>
    public void Dispose() => _key.Dispose();

    /// <summary>The node id in hex.</summary>
    public override string ToString() => NodeId.ToString();

    /// <summary>Imports exactly one well-formed P-256 SubjectPublicKeyInfo, or returns null; the caller disposes the key.</summary>
    internal static ECDsa? TryImportPublicKey(ReadOnlySpan<byte> subjectPublicKeyInfo)
    {
        if (subjectPublicKeyInfo.IsEmpty)
        {
            return null;
        }

        var key = ECDsa.Create();
        try
        {
            key.ImportSubjectPublicKeyInfo(subjectPublicKeyInfo, out var read);
            if (read == subjectPublicKeyInfo.Length && IsP256(key))
            {
                return key;
            }
        }
        catch (CryptographicException)
        {
        }

        key.Dispose();
        return null;
    }

    private static bool IsP256(ECDsa key)
    {
        if (key.KeySize != 256)
        {
            return false;
        }

        var curve = key.ExportParameters(false).Curve;
        return curve.IsNamed && (curve.Oid.Value == ECCurve.NamedCurves.nistP256.Oid.Value || curve.Oid.FriendlyName is "nistP256" or "ECDSA_P256");
    }

    private static void EnsureP256(ECDsa key)
    {
        if (!IsP256(key))
        {
            throw new CryptographicException($"The key is a {key.KeySize}-bit EC key, not P-256.");
        }
    }
}
