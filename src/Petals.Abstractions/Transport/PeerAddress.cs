using System.Globalization;

namespace Petals.Transport;

/// <summary>
/// Where a peer can be reached: <c>scheme://[peerId@]location</c>, e.g. <c>tcp://127.0.0.1:5000</c>,
/// <c>tcp://3f2a…@127.0.0.1:5000</c> (with the identity the peer must prove), <c>mem://server-1</c> or
/// <c>quic://host:4433</c>. The scheme selects the transport; the location is the transport's business
/// (<see cref="Host"/> and <see cref="Port"/> read the common <c>host:port</c> form, IPv6 hosts in brackets).
/// </summary>
public readonly struct PeerAddress : IEquatable<PeerAddress>
{
    private const string Separator = "://";
    private readonly string? _value;
    private readonly string? _scheme;
    private readonly string? _location;

    private PeerAddress(string value, string scheme, string? peerId, string location)
    {
        _value = value;
        _scheme = scheme;
        PeerId = peerId;
        _location = location;
    }

    /// <summary>The scheme in lower case, e.g. <c>"tcp"</c> (empty for the default value).</summary>
    public string Scheme => _scheme ?? string.Empty;

    /// <summary>The identity the peer must prove (the part before <c>@</c>), or null.</summary>
    public string? PeerId { get; }

    /// <summary>Everything after the scheme separator and the optional peer id, e.g. <c>"127.0.0.1:5000"</c> (empty for the default value).</summary>
    public string Location => _location ?? string.Empty;

    /// <summary>Whether this is the default (empty) value rather than a parsed address.</summary>
    public bool IsEmpty => _value is null;

    /// <summary>The host part of a <c>host:port</c> location (without IPv6 brackets).</summary>
    /// <exception cref="FormatException">The location is not <c>host:port</c>.</exception>
    public string Host => SplitHostPort().Host;

    /// <summary>The port of a <c>host:port</c> location (0 to 65535).</summary>
    /// <exception cref="FormatException">The location is not <c>host:port</c> or the port is not a number in range.</exception>
    public int Port => SplitHostPort().Port;

    /// <summary>Parses an address.</summary>
    /// <param name="text">The address text, e.g. <c>tcp://127.0.0.1:5000</c>.</param>
    /// <returns>The address.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    /// <exception cref="FormatException">The text has no scheme, a bad scheme, an empty peer id or an empty location; the message quotes the text.</exception>
    public static PeerAddress Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out var address, out var error) ? address : throw new FormatException($"Invalid peer address '{text}': {error}.");
    }

    /// <summary>Tries to parse an address.</summary>
    /// <param name="text">The address text.</param>
    /// <param name="address">The address when parsing succeeded.</param>
    /// <returns>Whether <paramref name="text"/> is a valid address.</returns>
    public static bool TryParse(string? text, out PeerAddress address) => TryParse(text, out address, out _);

    /// <summary>Creates an address from its parts.</summary>
    /// <param name="scheme">The scheme, e.g. <c>"tcp"</c>.</param>
    /// <param name="location">The location, e.g. <c>"127.0.0.1:5000"</c>.</param>
    /// <param name="peerId">The identity the peer must prove, or null.</param>
    /// <returns>The address.</returns>
    /// <exception cref="FormatException">A part is invalid.</exception>
    public static PeerAddress Create(string scheme, string location, string? peerId = null) =>
        Parse(peerId is null ? $"{scheme}{Separator}{location}" : $"{scheme}{Separator}{peerId}@{location}");

    /// <summary>Creates a <c>host:port</c> address, bracketing IPv6 hosts.</summary>
    /// <param name="scheme">The scheme, e.g. <c>"tcp"</c>.</param>
    /// <param name="host">The host name or IP address.</param>
    /// <param name="port">The port, 0 to 65535.</param>
    /// <param name="peerId">The identity the peer must prove, or null.</param>
    /// <returns>The address.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="port"/> is out of range.</exception>
    /// <exception cref="FormatException">A part is invalid.</exception>
    public static PeerAddress FromHostPort(string scheme, string host, int port, string? peerId = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        var h = host.Contains(':', StringComparison.Ordinal) && !host.StartsWith('[') ? $"[{host}]" : host;
        return Create(scheme, $"{h}:{port.ToString(CultureInfo.InvariantCulture)}", peerId);
    }

    /// <summary>Returns the same address with another peer id (or none).</summary>
    /// <param name="peerId">The identity the peer must prove, or null.</param>
    /// <returns>The address.</returns>
    public PeerAddress WithPeerId(string? peerId) => Create(Scheme, Location, peerId);

    private static bool TryParse(string? text, out PeerAddress address, out string error)
    {
        address = default;
        if (string.IsNullOrEmpty(text))
        {
            error = "the address is empty";
            return false;
        }

        var sep = text.IndexOf(Separator, StringComparison.Ordinal);
        if (sep <= 0)
        {
            error = "expected 'scheme://location', e.g. 'tcp://127.0.0.1:5000'";
            return false;
        }

        var scheme = text[..sep];
        if (!char.IsAsciiLetter(scheme[0]))
        {
            error = $"the scheme '{scheme}' must start with a letter";
            return false;
        }

        foreach (var c in scheme)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not '+' and not '-' and not '.')
            {
                error = $"the scheme '{scheme}' may only contain letters, digits, '+', '-' and '.'";
                return false;
            }
        }

        var rest = text[(sep + Separator.Length)..];
        foreach (var c in rest)
        {
            if (char.IsWhiteSpace(c) || char.IsControl(c))
            {
                error = "the address contains white space or control characters";
                return false;
            }
        }

        string? peerId = null;
        var at = rest.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            peerId = rest[..at];
            rest = rest[(at + 1)..];
            if (peerId.Length == 0)
            {
                error = "the peer id before '@' is empty";
                return false;
            }

            if (rest.Contains('@', StringComparison.Ordinal))
            {
                error = "more than one '@'";
                return false;
            }
        }

        if (rest.Length == 0)
        {
            error = "the location after 'scheme://' is empty";
            return false;
        }

        scheme = scheme.ToLowerInvariant();
        var normalized = peerId is null ? $"{scheme}{Separator}{rest}" : $"{scheme}{Separator}{peerId}@{rest}";
        address = new PeerAddress(normalized, scheme, peerId, rest);
        error = string.Empty;
        return true;
    }

    private (string Host, int Port) SplitHostPort()
    {
        var location = _location ?? throw new FormatException("The peer address is empty.");
        int colon;
        string host;
        if (location.StartsWith('['))
        {
            var close = location.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 >= location.Length || location[close + 1] != ':')
            {
                throw new FormatException($"Invalid peer address '{_value}': expected '[ipv6]:port'.");
            }

            host = location[1..close];
            colon = close + 1;
        }
        else
        {
            colon = location.LastIndexOf(':');
            if (colon <= 0)
            {
                throw new FormatException($"Invalid peer address '{_value}': expected 'host:port'.");
            }

            host = location[..colon];
            if (host.Contains(':', StringComparison.Ordinal))
            {
                throw new FormatException($"Invalid peer address '{_value}': an IPv6 host must be in brackets, e.g. '[::1]:5000'.");
            }
        }

        var portText = location[(colon + 1)..];
        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535)
        {
            throw new FormatException($"Invalid peer address '{_value}': the port '{portText}' is not a number from 0 to 65535.");
        }

        return (host, port);
    }

    /// <inheritdoc/>
    public bool Equals(PeerAddress other) => string.Equals(_value, other._value, StringComparison.Ordinal);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is PeerAddress other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => _value is null ? 0 : StringComparer.Ordinal.GetHashCode(_value);

    /// <summary>The address text, e.g. <c>tcp://127.0.0.1:5000</c> (empty for the default value).</summary>
    /// <returns>The text.</returns>
    public override string ToString() => _value ?? string.Empty;

    /// <summary>Whether two addresses are the same text.</summary>
    /// <param name="left">The first address.</param>
    /// <param name="right">The second address.</param>
    public static bool operator ==(PeerAddress left, PeerAddress right) => left.Equals(right);

    /// <summary>Whether two addresses differ.</summary>
    /// <param name="left">The first address.</param>
    /// <param name="right">The second address.</param>
    public static bool operator !=(PeerAddress left, PeerAddress right) => !left.Equals(right);
}
