namespace Petals.Protocol;

/// <summary>A string-backed error code carried by <see cref="ErrorMessage"/> frames and <see cref="ProtocolException"/>.</summary>
/// <remarks>
/// Codes are open: servers and later protocol versions may add values, and receivers keep unknown codes as they are.
/// Comparison is ordinal. The defined codes are listed in docs/wire-protocol.md, section 6.
/// </remarks>
public readonly struct ProtocolErrorCode : IEquatable<ProtocolErrorCode>
{
    private readonly string? _value;

    /// <summary>Creates a code from its wire value.</summary>
    /// <param name="value">The code, non-empty.</param>
    /// <exception cref="ArgumentException">When <paramref name="value"/> is null or empty.</exception>
    public ProtocolErrorCode(string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(value);
        _value = value;
    }

    /// <summary>The wire value of the code (<c>"internal"</c> for a default instance).</summary>
    public string Value => _value ?? "internal";

    /// <summary>Wrong magic, truncated or invalid preamble.</summary>
    public static ProtocolErrorCode BadPreamble { get; } = new("bad_preamble");

    /// <summary>The preamble is longer than the receiver's cap.</summary>
    public static ProtocolErrorCode PreambleTooLarge { get; } = new("preamble_too_large");

    /// <summary>The peers' major protocol versions differ.</summary>
    public static ProtocolErrorCode VersionMismatch { get; } = new("version_mismatch");

    /// <summary>Both peers name a model and the names differ.</summary>
    public static ProtocolErrorCode ModelMismatch { get; } = new("model_mismatch");

    /// <summary>A frame payload is larger than the receiver's maximum frame size.</summary>
    public static ProtocolErrorCode FrameTooLarge { get; } = new("frame_too_large");

    /// <summary>A chunked message is larger than the receiver's maximum message size.</summary>
    public static ProtocolErrorCode MessageTooLarge { get; } = new("message_too_large");

    /// <summary>The frame type byte is not known.</summary>
    public static ProtocolErrorCode UnknownFrameType { get; } = new("unknown_frame_type");

    /// <summary>A reserved flag, or a flag that does not apply to the frame type, is set.</summary>
    public static ProtocolErrorCode InvalidFlags { get; } = new("invalid_flags");

    /// <summary>Inconsistent chunking or an invalid field value.</summary>
    public static ProtocolErrorCode MalformedFrame { get; } = new("malformed_frame");

    /// <summary>A field extends past the end of its message, or the stream ended inside a frame.</summary>
    public static ProtocolErrorCode Truncated { get; } = new("truncated");

    /// <summary>Bytes are left after the last field of a message.</summary>
    public static ProtocolErrorCode TrailingBytes { get; } = new("trailing_bytes");

    /// <summary>An unknown codec or dtype code.</summary>
    public static ProtocolErrorCode BadDType { get; } = new("bad_dtype");

    /// <summary>A tensor rank outside 1..4 or a zero dimension.</summary>
    public static ProtocolErrorCode BadShape { get; } = new("bad_shape");

    /// <summary>A tensor's element count or byte size overflows or exceeds the message limit.</summary>
    public static ProtocolErrorCode ShapeOverflow { get; } = new("shape_overflow");

    /// <summary>A string is longer than the configured maximum.</summary>
    public static ProtocolErrorCode StringTooLong { get; } = new("string_too_long");

    /// <summary>String bytes are not valid UTF-8.</summary>
    public static ProtocolErrorCode InvalidUtf8 { get; } = new("invalid_utf8");

    /// <summary>A message or frame is not allowed at this point of its stream.</summary>
    public static ProtocolErrorCode OutOfOrder { get; } = new("out_of_order");

    /// <summary>The requested blocks are not (all) served by the callee.</summary>
    public static ProtocolErrorCode SpanMismatch { get; } = new("span_mismatch");

    /// <summary>The server has no attention cache left for the request.</summary>
    public static ProtocolErrorCode CacheExhausted { get; } = new("cache_exhausted");

    /// <summary>The inference session is not known to the server.</summary>
    public static ProtocolErrorCode UnknownSession { get; } = new("unknown_session");

    /// <summary>A step's start position lies past the tokens in the session cache.</summary>
    public static ProtocolErrorCode BadPosition { get; } = new("bad_position");

    /// <summary>A hypo id lies outside the batch.</summary>
    public static ProtocolErrorCode BadHypoIds { get; } = new("bad_hypo_ids");

    /// <summary>A step id was already applied and its result is no longer held.</summary>
    public static ProtocolErrorCode DuplicateStep { get; } = new("duplicate_step");

    /// <summary>The server is overloaded.</summary>
    public static ProtocolErrorCode Busy { get; } = new("busy");

    /// <summary>An unexpected failure inside the peer.</summary>
    public static ProtocolErrorCode Internal { get; } = new("internal");

    /// <summary>
    /// The server's cache budget is not full, but this client (one peer: its address or identity) already holds or waits
    /// for its share of it (the server's <c>MaxCacheShare</c>); the session was refused at once. Retryable: on another
    /// server, or on this one once one of the client's sessions ends.
    /// </summary>
    public static ProtocolErrorCode CacheBusy { get; } = new("cache_busy");

    /// <summary>
    /// A request carries a NaN or an infinity (hidden states, prompts); the message names the tensor and the first
    /// offending index. Nothing was computed: on an inference stream the step is refused and the session stays open
    /// with its cache unchanged (the only error that does not end its call; docs/wire-protocol.md, section 5).
    /// </summary>
    public static ProtocolErrorCode NonFiniteInput { get; } = new("non_finite_input");

    /// <summary>The server refused the connection: it holds its limit of connections in total or from the caller's address. Retry later or elsewhere.</summary>
    public static ProtocolErrorCode ConnectionLimit { get; } = new("connection_limit");

    /// <summary>The connection was closed because it had no open session and sent nothing for the server's connection idle timeout.</summary>
    public static ProtocolErrorCode ConnectionIdle { get; } = new("connection_idle");

    /// <summary>The connection was closed because a message in progress arrived slower than the server's minimum receive rate.</summary>
    public static ProtocolErrorCode ReceiveTooSlow { get; } = new("receive_too_slow");

    /// <summary>Whether two codes are equal (ordinal).</summary>
    /// <param name="left">The first code.</param>
    /// <param name="right">The second code.</param>
    /// <returns><see langword="true"/> when the values are equal.</returns>
    public static bool operator ==(ProtocolErrorCode left, ProtocolErrorCode right) => left.Equals(right);

    /// <summary>Whether two codes differ (ordinal).</summary>
    /// <param name="left">The first code.</param>
    /// <param name="right">The second code.</param>
    /// <returns><see langword="true"/> when the values differ.</returns>
    public static bool operator !=(ProtocolErrorCode left, ProtocolErrorCode right) => !left.Equals(right);

    /// <inheritdoc />
    public bool Equals(ProtocolErrorCode other) => string.Equals(Value, other.Value, StringComparison.Ordinal);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is ProtocolErrorCode other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Value);

    /// <inheritdoc />
    public override string ToString() => Value;
}
