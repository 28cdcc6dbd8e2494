using FsCheck;
using FsCheck.Fluent;
using Petals.Transport;

namespace Petals.Abstractions.Tests.Transport;

public sealed class PeerAddressTests
{
    [Theory]
    [InlineData("tcp://127.0.0.1:5000", "tcp", null, "127.0.0.1:5000", "127.0.0.1", 5000)]
    [InlineData("TCP://host.example:0", "tcp", null, "host.example:0", "host.example", 0)]
    [InlineData("quic://abc123@[::1]:4433", "quic", "abc123", "[::1]:4433", "::1", 4433)]
    [InlineData("tls+tcp://peer@10.0.0.1:65535", "tls+tcp", "peer", "10.0.0.1:65535", "10.0.0.1", 65535)]
    public void Parses_scheme_peer_id_and_host_port(string text, string scheme, string? peerId, string location, string host, int port)
    {
        var address = PeerAddress.Parse(text);
        Assert.Equal(scheme, address.Scheme);
        Assert.Equal(peerId, address.PeerId);
        Assert.Equal(location, address.Location);
        Assert.Equal(host, address.Host);
        Assert.Equal(port, address.Port);
        Assert.Equal(address, PeerAddress.Parse(address.ToString()));
    }

    [Fact]
    public void Memory_addresses_need_no_port()
    {
        var address = PeerAddress.Parse("mem://server-1");
        Assert.Equal("mem", address.Scheme);
        Assert.Equal("server-1", address.Location);
        var error = Assert.Throws<FormatException>(() => address.Port);
        Assert.Contains("mem://server-1", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("127.0.0.1:5000", "scheme://location")]
    [InlineData("://x", "scheme://location")]
    [InlineData("1tcp://x", "must start with a letter")]
    [InlineData("t_cp://x", "may only contain")]
    [InlineData("tcp://", "location after")]
    [InlineData("tcp://@host:1", "peer id before '@' is empty")]
    [InlineData("tcp://a@b@host:1", "more than one '@'")]
    [InlineData("tcp://host name:1", "white space")]
    public void Rejects_malformed_text_with_a_precise_message(string text, string expected)
    {
        var error = Assert.Throws<FormatException>(() => PeerAddress.Parse(text));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Contains($"'{text}'", error.Message, StringComparison.Ordinal);
        Assert.False(PeerAddress.TryParse(text, out _));
    }

    [Theory]
    [InlineData("tcp://host:70000", "0 to 65535")]
    [InlineData("tcp://host:-1", "0 to 65535")]
    [InlineData("tcp://host", "host:port")]
    [InlineData("tcp://::1:5000", "brackets")]
    [InlineData("tcp://[::1]5000", "[ipv6]:port")]
    public void Host_and_port_errors_name_the_address(string text, string expected)
    {
        var address = PeerAddress.Parse(text);
        var error = Assert.Throws<FormatException>(() => address.Port);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Contains(text, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Host_port_round_trips_for_any_port_and_peer_id()
    {
        Prop.ForAll(
            Gen.Choose(0, 65535).ToArbitrary(),
            Gen.Elements("127.0.0.1", "::1", "example.org", "fe80::1").ToArbitrary(),
            Gen.Elements<string?>(null, "abc", "0123456789abcdef").ToArbitrary(),
            (port, host, peerId) =>
            {
                var address = PeerAddress.FromHostPort("tcp", host, port, peerId);
                var parsed = PeerAddress.Parse(address.ToString());
                return parsed == address && parsed.Port == port && parsed.Host == host && parsed.PeerId == peerId
                    && parsed.WithPeerId(null).PeerId is null;
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Default_value_is_empty()
    {
        PeerAddress empty = default;
        Assert.True(empty.IsEmpty);
        Assert.Equal(string.Empty, empty.ToString());
        Assert.Equal(string.Empty, empty.Scheme);
        Assert.Equal(string.Empty, empty.Location);
        Assert.Throws<FormatException>(() => empty.Port);
        Assert.NotEqual(empty, PeerAddress.Parse("mem://x"));
    }

    [Fact]
    public void Error_kinds_compare_by_name()
    {
        Assert.Equal(TransportErrorKind.Aborted, new TransportErrorKind("Aborted"));
        Assert.True(TransportErrorKind.Timeout != TransportErrorKind.Aborted);
        Assert.Equal("ConnectionRefused", TransportErrorKind.ConnectionRefused.ToString());
        Assert.Equal("Unknown", default(TransportErrorKind).Value);
        Assert.Throws<ArgumentException>(() => new TransportErrorKind(" "));
        var e = new TransportException(TransportErrorKind.Timeout, "slow");
        Assert.Equal(TransportErrorKind.Timeout, e.Kind);
    }
}
