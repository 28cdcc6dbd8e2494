using System.Security.Cryptography;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using TestData = Petals.Testing.TestData;
using static Petals.Discovery.Tests.DhtTestKit;

namespace Petals.Discovery.Tests.Identity;

public sealed class PeerIdentityTests
{
    [Fact]
    public void Signatures_verify_and_any_tampering_fails()
    {
        var signer = Identities[0];
        var other = Identities[1];
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var data = RandomBytes(random, random.Next(0, 300));
            var signature = signer.Sign(data);
            Assert.Equal(PeerIdentity.SignatureSize, signature.Length);
            Assert.True(signer.Verify(data, signature));
            Assert.True(PeerIdentity.Verify(signer.PublicKey.Span, data, signature));
            Assert.False(PeerIdentity.Verify(other.PublicKey.Span, data, signature));

            var flipped = (byte[])signature.Clone();
            flipped[random.Next(flipped.Length)] ^= (byte)(1 << random.Next(8));
            Assert.False(PeerIdentity.Verify(signer.PublicKey.Span, data, flipped));

            if (data.Length > 0)
            {
                var changed = (byte[])data.Clone();
                changed[random.Next(changed.Length)] ^= (byte)(1 << random.Next(8));
                Assert.False(PeerIdentity.Verify(signer.PublicKey.Span, changed, signature));
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(100));
    }

    [Fact]
    public void Malformed_keys_and_signatures_verify_false_without_throwing()
    {
        var signer = Identities[0];
        var data = new byte[] { 1, 2, 3 };
        var signature = signer.Sign(data);
        Assert.False(PeerIdentity.Verify([], data, signature));
        Assert.False(PeerIdentity.Verify(new byte[91], data, signature));
        Assert.False(PeerIdentity.Verify(signer.PublicKey.Span[..90], data, signature));
        Assert.False(PeerIdentity.Verify([.. signer.PublicKey.Span, 0], data, signature));
        Assert.False(PeerIdentity.Verify(signer.PublicKey.Span, data, signature.AsSpan(0, 63)));
        Assert.False(PeerIdentity.Verify(signer.PublicKey.Span, data, []));

        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        Assert.False(PeerIdentity.IsValidPublicKey(p384.ExportSubjectPublicKeyInfo()));
        using var rsa = RSA.Create(2048);
        Assert.False(PeerIdentity.IsValidPublicKey(rsa.ExportSubjectPublicKeyInfo()));
        Assert.True(PeerIdentity.IsValidPublicKey(signer.PublicKey.Span));
    }

    [Fact]
    public void Key_file_round_trips_with_owner_only_permissions()
    {
        using var temp = TestData.CreateTempDirectory();
        var path = Path.Combine(temp.Path, "keys", "node.pem");
        var original = Identities[2];
        original.Save(path);

        var text = File.ReadAllText(path);
        Assert.StartsWith("-----BEGIN PRIVATE KEY-----", text, StringComparison.Ordinal);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }

        using var loaded = PeerIdentity.Load(path);
        Assert.Equal(original.NodeId, loaded.NodeId);
        Assert.True(original.PublicKey.Span.SequenceEqual(loaded.PublicKey.Span));
        var data = Encoding.UTF8.GetBytes("hello");
        Assert.True(PeerIdentity.Verify(original.PublicKey.Span, data, loaded.Sign(data)));

        // Saving again replaces the file atomically and leaves no temporary files behind.
        loaded.Save(path);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!));
    }

    [Fact]
    public void Load_or_create_keeps_the_identity_stable()
    {
        using var temp = TestData.CreateTempDirectory();
        var path = Path.Combine(temp.Path, "id.pem");
        using var first = PeerIdentity.LoadOrCreate(path);
        using var second = PeerIdentity.LoadOrCreate(path);
        Assert.Equal(first.NodeId, second.NodeId);
        using var fresh = PeerIdentity.Generate();
        Assert.NotEqual(first.NodeId, fresh.NodeId);
    }

    [Fact]
    public void Missing_file_is_named()
    {
        using var temp = TestData.CreateTempDirectory();
        var path = Path.Combine(temp.Path, "absent.pem");
        var error = Assert.Throws<FileNotFoundException>(() => PeerIdentity.Load(path));
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_truncation_of_a_key_file_gives_a_precise_error()
    {
        using var temp = TestData.CreateTempDirectory();
        var path = Path.Combine(temp.Path, "node.pem");
        Identities[3].Save(path);
        var full = File.ReadAllBytes(path);
        var end = Encoding.ASCII.GetString(full).IndexOf("-----END PRIVATE KEY-----", StringComparison.Ordinal) + "-----END PRIVATE KEY-----".Length;
        for (var length = 0; length < end; length++)
        {
            File.WriteAllBytes(path, full.AsSpan(0, length).ToArray());
            var error = Assert.Throws<InvalidDataException>(() => PeerIdentity.Load(path));
            Assert.Contains(path, error.Message, StringComparison.Ordinal);
            Assert.True(
                error.Message.Contains("is empty", StringComparison.Ordinal) || error.Message.Contains("truncated", StringComparison.Ordinal),
                $"At length {length}: {error.Message}");
        }
    }

    [Fact]
    public void Corrupt_key_files_name_the_fault()
    {
        using var temp = TestData.CreateTempDirectory();
        var path = Path.Combine(temp.Path, "node.pem");

        void Expect(string content, string fragment)
        {
            File.WriteAllText(path, content);
            var error = Assert.Throws<InvalidDataException>(() => PeerIdentity.Load(path));
            Assert.Contains(path, error.Message, StringComparison.Ordinal);
            Assert.Contains(fragment, error.Message, StringComparison.Ordinal);
        }

        Expect("not a key at all", "no complete PEM block");
        Expect(PemEncoding.WriteString("CERTIFICATE", new byte[] { 1, 2, 3 }), "'CERTIFICATE' PEM block");
        Expect(PemEncoding.WriteString("PRIVATE KEY", RandomBytes(new Random(7), 120)), "not hold a valid PKCS#8 ECDSA P-256 private key");
        using var rsa = RSA.Create(2048);
        Expect(rsa.ExportPkcs8PrivateKeyPem(), "not hold a valid PKCS#8 ECDSA P-256 private key");
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        Expect(p384.ExportPkcs8PrivateKeyPem(), "not P-256");
        Expect(new string('A', PeerIdentity.MaxKeyFileBytes + 1), "at most 16384 bytes");
    }

    [Fact]
    public void Load_or_create_never_overwrites_a_corrupt_file()
    {
        using var temp = TestData.CreateTempDirectory();
        var path = Path.Combine(temp.Path, "node.pem");
        File.WriteAllText(path, "-----BEGIN PRIVATE KEY-----\nAAAA");
        Assert.Throws<InvalidDataException>(() => PeerIdentity.LoadOrCreate(path));
        Assert.Equal("-----BEGIN PRIVATE KEY-----\nAAAA", File.ReadAllText(path));
    }
}
