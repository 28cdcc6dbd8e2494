namespace Petals.Protocol;

/// <summary>A typed error; it ends the call on its stream (on stream 0: the connection).</summary>
/// <param name="Code">The string-backed error code.</param>
/// <param name="Message">A human-readable description naming the field or value at fault.</param>
public sealed record ErrorMessage(ProtocolErrorCode Code, string Message) : ProtocolMessage
{
    /// <inheritdoc />
    public override FrameType Type => FrameType.Error;

    /// <summary>Builds the error frame that reports <paramref name="exception"/>; the text is cut to fit the string limit.</summary>
    /// <param name="exception">The protocol violation.</param>
    /// <param name="limits">The limits of the receiving side (its string limit applies).</param>
    /// <returns>The message.</returns>
    public static ErrorMessage From(ProtocolException exception, ProtocolLimits limits)
    {
        ArgumentNullException.ThrowIfNull(exception);
        ArgumentNullException.ThrowIfNull(limits);
        var text = exception.Message;

        // A UTF-16 char takes at most 3 UTF-8 bytes; cutting by chars keeps the text under the byte limit.
        var maxChars = limits.MaxStringBytes / 3;
        if (text.Length > maxChars)
        {
            text = text[..maxChars];
            if (text.Length > 0 && char.IsHighSurrogate(text[^1]))
            {
                text = text[..^1];
            }
        }

        return new ErrorMessage(exception.Code, text);
    }

    /// <summary>The exception that this error frame stands for on the receiving side.</summary>
    /// <param name="streamId">The stream the error arrived on.</param>
    /// <returns>A <see cref="ProtocolException"/> with the same code, its message prefixed by "peer reported".</returns>
    public ProtocolException ToException(uint streamId) =>
        new(Code, $"The peer reported {Code.Value} on stream {streamId}: {Message}") { StreamId = streamId };

    internal override int GetPayloadSize(ProtocolLimits limits) =>
        WireWriter.StringSize(Code.Value, "code", limits.MaxStringBytes) + WireWriter.StringSize(Message, "message", limits.MaxStringBytes);

    internal override void WritePayload(ref WireWriter writer)
    {
        writer.String(Code.Value);
        writer.String(Message);
    }
}
