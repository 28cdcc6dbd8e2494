using System.Security.Cryptography;
using FsCheck;
using FsCheck.Fluent;
using Petals.Transport;

namespace Petals.Abstractions.Tests.Transport;

public sealed class AuthenticatedPeerTests
{
    private static readonly string Id = Convert.ToHexStringLower(SHA256.HashData("a key"u8));

    [Fact]
    public void The_full_id_and_its_40_digit_prefix_identify_the_key_in_any_case()
    {
        var peer = new AuthenticatedPeer(Id.ToUpperInvariant());
        Assert.Equal(Id, peer.PeerId);
        Assert.Equal(Id[..40], peer.ShortPeerId);
        Assert.True(peer.IsIdentifiedBy(Id));
        Assert.True(peer.IsIdentifiedBy(Id.ToUpperInvariant()));
        Assert.True(peer.IsIdentifiedBy(Id[..40]));
        Assert.True(peer.IsIdentifiedBy(Id[..40].ToUpperInvariant()));
        Assert.Equal(Id, peer.ToString());
    }

    [Fact]
    public void Other_prefixes_other_keys_and_free_form_names_do_not()
    {
        var peer = new AuthenticatedPeer(Id);
        var other = Convert.ToHexStringLower(SHA256.HashData("another key"u8));
        Assert.False(peer.IsIdentifiedBy(other));
        Assert.False(peer.IsIdentifiedBy(other[..40]));
        Assert.False(peer.IsIdentifiedBy(null));
        Assert.False(peer.IsIdentifiedBy(string.Empty));
        Assert.False(peer.IsIdentifiedBy("petals-server"));
        Assert.False(peer.IsIdentifiedBy(Id + "0"));

        // Every prefix length other than 40 and 64 is refused: a shorter one would be cheaper to collide.
        Prop.ForAll(Gen.Choose(0, 64).ToArbitrary(), n => peer.IsIdentifiedBy(Id[..n]) == (n is 40 or 64)).QuickCheckThrowOnFailure();
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("zz00000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("0000000000000000000000000000000000000000")]
    public void A_proven_id_is_64_hex_digits(string id)
    {
        var error = Assert.Throws<ArgumentException>(() => new AuthenticatedPeer(id));
        Assert.Contains("64 hex digits", error.Message, StringComparison.Ordinal);
        Assert.Equal("peerId", error.ParamName);
    }
}
