using System.Security.Cryptography;
using System.Text;

namespace Petals.Transport.Tcp.Tests;

/// <summary>One key per peer (a TLS identity from an existing key), pinning by the full key id or its 40-digit node-id prefix, and the unpinned opt-in.</summary>
public sealed class TlsIdentityPinningTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void An_identity_from_an_existing_key_has_that_keys_id()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var expected = Convert.ToHexStringLower(SHA256.HashData(key.ExportSubjectPublicKeyInfo()));

        using var fromKey = TlsPeerIdentity.FromPrivateKey(key);
        using var fromPkcs8 = TlsPeerIdentity.FromPkcs8(key.ExportPkcs8PrivateKey());
        Assert.Equal(expected, fromKey.PeerId);
        Assert.Equal(expected, fromPkcs8.PeerId);
        Assert.Equal(expected[..40], fromKey.ShortPeerId);
        Assert.True(fromKey.Certificate.HasPrivateKey);

        // The caller keeps its key: it still signs after the identity is made (and disposed).
        fromKey.Dispose();
        Assert.NotEmpty(key.SignData("still usable"u8, HashAlgorithmName.SHA256));
    }

    [Fact]
    public void Keys_that_cannot_make_an_identity_are_refused_precisely()
    {
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        var curve = Assert.Throws<ArgumentException>(() => TlsPeerIdentity.FromPrivateKey(p384));
        Assert.Contains("P-256", curve.Message, StringComparison.Ordinal);
        Assert.Contains("384", curve.Message, StringComparison.Ordinal);

        using var full = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var publicOnly = ECDsa.Create();
        publicOnly.ImportSubjectPublicKeyInfo(full.ExportSubjectPublicKeyInfo(), out _);
        var noPrivate = Assert.Throws<ArgumentException>(() => TlsPeerIdentity.FromPrivateKey(publicOnly));
        Assert.Contains("private", noPrivate.Message, StringComparison.Ordinal);

        var garbage = Assert.Throws<ArgumentException>(() => TlsPeerIdentity.FromPkcs8("not a key"u8));
        Assert.Contains("PKCS#8", garbage.Message, StringComparison.Ordinal);

        var trailing = full.ExportPkcs8PrivateKey().Append((byte)0).ToArray();
        var extra = Assert.Throws<ArgumentException>(() => TlsPeerIdentity.FromPkcs8(trailing));
        Assert.Contains("1 extra bytes", extra.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_client_pins_by_the_full_id_or_its_40_digit_prefix_and_learns_the_proven_key()
    {
        using var identity = TlsPeerIdentity.Create();
        await using var listener = await new TcpTransport(new TcpTransportOptions { Identity = identity }).ListenAsync(PeerAddress.Parse("tls://127.0.0.1:0"), Ct);
        var client = new TcpTransport();

        foreach (var pin in new[] { identity.PeerId, identity.ShortPeerId, identity.ShortPeerId.ToUpperInvariant() })
        {
            await using var stream = await client.ConnectAsync(listener.LocalAddress.WithPeerId(pin), Ct).AsTask().WaitAsync(Bound, Ct);
            var proven = Assert.IsType<AuthenticatedPeer>(stream.GetService(typeof(AuthenticatedPeer)));
            Assert.Equal(identity.PeerId, proven.PeerId);
            await using var accepted = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);

            // Only the server proves a key: the accepting side knows nothing of the client.
            Assert.Null(accepted.GetService(typeof(AuthenticatedPeer)));
            await stream.WriteAsync(Encoding.UTF8.GetBytes(pin), Ct);
            var buffer = new byte[64];
            Assert.Equal(pin, Encoding.UTF8.GetString(buffer, 0, await accepted.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct)));
        }
    }

    [Theory]
    [InlineData(39)]
    [InlineData(41)]
    [InlineData(63)]
    public async Task Other_prefix_lengths_of_the_right_key_are_refused(int length)
    {
        using var identity = TlsPeerIdentity.Create();
        await using var listener = await new TcpTransport(new TcpTransportOptions { Identity = identity }).ListenAsync(PeerAddress.Parse("tls://127.0.0.1:0"), Ct);
        var error = await Assert.ThrowsAsync<TransportException>(
            async () => await new TcpTransport().ConnectAsync(listener.LocalAddress.WithPeerId(identity.PeerId[..length]), Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.AuthenticationFailed, error.Kind);
        Assert.Contains($"proved the identity {identity.PeerId}, not the expected {identity.PeerId[..length]}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_node_id_prefix_of_another_key_is_refused()
    {
        using var identity = TlsPeerIdentity.Create();
        using var impostor = TlsPeerIdentity.Create();
        await using var listener = await new TcpTransport(new TcpTransportOptions { Identity = impostor }).ListenAsync(PeerAddress.Parse("tls://127.0.0.1:0"), Ct);
        var error = await Assert.ThrowsAsync<TransportException>(
            async () => await new TcpTransport().ConnectAsync(listener.LocalAddress.WithPeerId(identity.ShortPeerId), Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.AuthenticationFailed, error.Kind);
        Assert.Contains(impostor.PeerId, error.Message, StringComparison.Ordinal);
        Assert.Contains(identity.ShortPeerId, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_address_without_an_id_needs_the_explicit_opt_in_and_then_reports_the_key_met()
    {
        using var identity = TlsPeerIdentity.Create();
        await using var listener = await new TcpTransport(new TcpTransportOptions { Identity = identity }).ListenAsync(PeerAddress.Parse("tls://127.0.0.1:0"), Ct);
        var unpinned = listener.LocalAddress.WithPeerId(null);

        var refused = await Assert.ThrowsAsync<ArgumentException>(async () => await new TcpTransport().ConnectAsync(unpinned, Ct));
        Assert.Contains("needs the expected peer id", refused.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(TcpTransportOptions.AllowUnpinnedTls), refused.Message, StringComparison.Ordinal);
        Assert.False(new TcpTransportOptions().AllowUnpinnedTls);

        var trusting = new TcpTransport(new TcpTransportOptions { AllowUnpinnedTls = true });
        await using var stream = await trusting.ConnectAsync(unpinned, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(identity.PeerId, Assert.IsType<AuthenticatedPeer>(stream.GetService(typeof(AuthenticatedPeer))).PeerId);
        await using var accepted = await listener.AcceptAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await stream.WriteAsync("encrypted"u8.ToArray(), Ct);
        var buffer = new byte[16];
        Assert.Equal("encrypted", Encoding.UTF8.GetString(buffer, 0, await accepted.ReadAsync(buffer, Ct).AsTask().WaitAsync(Bound, Ct)));

        // The opt-in does not loosen pinned addresses.
        using var impostor = TlsPeerIdentity.Create();
        var error = await Assert.ThrowsAsync<TransportException>(async () => await trusting.ConnectAsync(listener.LocalAddress.WithPeerId(impostor.PeerId), Ct).AsTask().WaitAsync(Bound, Ct));
        Assert.Equal(TransportErrorKind.AuthenticationFailed, error.Kind);
    }

    [Fact]
    public async Task Plain_tcp_streams_prove_nothing()
    {
        await using var listener = await new TcpTransport().ListenAsync(PeerAddress.Parse("tcp://127.0.0.1:0"), Ct);
        await using var stream = await new TcpTransport().ConnectAsync(listener.LocalAddress, Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Null(stream.GetService(typeof(AuthenticatedPeer)));
    }
}
