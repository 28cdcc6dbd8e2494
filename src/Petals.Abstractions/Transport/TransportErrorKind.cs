namespace Petals.Transport;

/// <summary>
/// What went wrong with a transport operation. A string-backed value set rather than a closed enum so that
/// transports can add their own kinds; compare with <see cref="Equals(TransportErrorKind)"/> or <c>==</c>.
/// </summary>
public readonly struct TransportErrorKind : IEquatable<TransportErrorKind>
{
    private readonly string? _value;

    /// <summary>Creates a kind from its name.</summary>
    /// <param name="value">A non-empty name such as <c>"ConnectionRefused"</c>.</param>
    /// <exception cref="ArgumentException"><paramref name="value"/> is null, empty or white space.</exception>
    public TransportErrorKind(string value)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(value);
        _value = value;
    }

    /// <summary>Nobody accepts connections at the address (no listener, or a fault injected to refuse).</summary>
    public static TransportErrorKind ConnectionRefused { get; } = new("ConnectionRefused");

    /// <summary>The stream was aborted, locally or by the peer; the message carries the reason.</summary>
    public static TransportErrorKind Aborted { get; } = new("Aborted");

    /// <summary>The connection broke without an orderly close or an abort reason (e.g. a TCP reset).</summary>
    public static TransportErrorKind ConnectionReset { get; } = new("ConnectionReset");

    /// <summary>An internal time limit (not the caller's cancellation) ran out, e.g. the connect timeout.</summary>
    public static TransportErrorKind Timeout { get; } = new("Timeout");

    /// <summary>The peer could not be authenticated (e.g. its TLS certificate does not match the expected peer id).</summary>
    public static TransportErrorKind AuthenticationFailed { get; } = new("AuthenticationFailed");

    /// <summary>The bind address is already in use or cannot be bound.</summary>
    public static TransportErrorKind AddressUnavailable { get; } = new("AddressUnavailable");

    /// <summary>The peer broke the transport's own framing rules.</summary>
    public static TransportErrorKind ProtocolViolation { get; } = new("ProtocolViolation");

    /// <summary>The name of the kind.</summary>
    public string Value => _value ?? "Unknown";

    /// <inheritdoc/>
    public bool Equals(TransportErrorKind other) => string.Equals(Value, other.Value, StringComparison.Ordinal);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is TransportErrorKind other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Value);

    /// <inheritdoc/>
    public override string ToString() => Value;

    /// <summary>Whether two kinds have the same name.</summary>
    /// <param name="left">The first kind.</param>
    /// <param name="right">The second kind.</param>
    public static bool operator ==(TransportErrorKind left, TransportErrorKind right) => left.Equals(right);

    /// <summary>Whether two kinds have different names.</summary>
    /// <param name="left">The first kind.</param>
    /// <param name="right">The second kind.</param>
    public static bool operator !=(TransportErrorKind left, TransportErrorKind right) => !left.Equals(right);
}
