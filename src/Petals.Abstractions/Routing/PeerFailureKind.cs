namespace Petals.Routing;

/// <summary>
/// Why a client gave up on a server for a call: what failure detection saw. A string-backed value, so third-party
/// detectors and policies can add kinds of their own (<c>new PeerFailureKind("my_kind")</c>).
/// </summary>
/// <param name="value">The kind's name, e.g. <c>"timeout"</c>; compared ordinally.</param>
public readonly struct PeerFailureKind(string value) : IEquatable<PeerFailureKind>
{
    /// <summary>The server could not be connected (refused, unreachable, no handshake or info within the connect timeout).</summary>
    public static PeerFailureKind Unreachable { get; } = new("unreachable");

    /// <summary>An established connection broke (reset, closed by the peer, a fatal framing error).</summary>
    public static PeerFailureKind ConnectionLost { get; } = new("connection_lost");

    /// <summary>The server is alive but did not answer a call within the request timeout (slow).</summary>
    public static PeerFailureKind Timeout { get; } = new("timeout");

    /// <summary>The server stayed silent, not even answering pings, past the liveness timeout (frozen or cut off).</summary>
    public static PeerFailureKind Unresponsive { get; } = new("unresponsive");

    /// <summary>The server answered a call with an error (cache exhausted, shutting down, a failed step, …).</summary>
    public static PeerFailureKind ErrorAnswer { get; } = new("error_answer");

    /// <summary>The server answered with something malformed (wrong shape, wrong step or position, undecodable).</summary>
    public static PeerFailureKind MalformedAnswer { get; } = new("malformed_answer");

    /// <summary>The server is not what it was announced as, or cannot serve this client (another peer id, span, model, hidden size, codec, limits).</summary>
    public static PeerFailureKind Mismatch { get; } = new("mismatch");

    /// <summary>
    /// The server's output was checked and found wrong: it disagreed, beyond both sides' stated numeric error, with a
    /// trusted recomputation (local blocks) or with two other servers that agreed with each other. A proven liar: the
    /// default policy bans it for <c>PeerHealthOptions.WrongOutputBan</c>, and a later success does not lift that ban.
    /// </summary>
    public static PeerFailureKind WrongOutput { get; } = new("wrong_output");

    /// <summary>
    /// The server's output disagreed with one other server's recomputation and no third opinion could say which of the
    /// two was wrong: both are reported with this kind (an ordinary, doubling ban), so a server that keeps being in
    /// disputes is kept out longer and longer.
    /// </summary>
    public static PeerFailureKind OutputDisputed { get; } = new("output_disputed");

    /// <summary>The kind's name.</summary>
    public string Value { get; } = value ?? throw new ArgumentNullException(nameof(value));

    /// <summary>Whether two kinds have the same name.</summary>
    /// <param name="left">A kind.</param>
    /// <param name="right">Another kind.</param>
    /// <returns>True when equal.</returns>
    public static bool operator ==(PeerFailureKind left, PeerFailureKind right) => left.Equals(right);

    /// <summary>Whether two kinds have different names.</summary>
    /// <param name="left">A kind.</param>
    /// <param name="right">Another kind.</param>
    /// <returns>True when not equal.</returns>
    public static bool operator !=(PeerFailureKind left, PeerFailureKind right) => !left.Equals(right);

    /// <inheritdoc />
    public bool Equals(PeerFailureKind other) => string.Equals(Value, other.Value, StringComparison.Ordinal);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is PeerFailureKind other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => Value is null ? 0 : StringComparer.Ordinal.GetHashCode(Value);

    /// <inheritdoc />
    public override string ToString() => Value ?? string.Empty;
}
