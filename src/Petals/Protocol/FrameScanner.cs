using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;

namespace Petals.Protocol;

/// <summary>The outcome of scanning buffered bytes for one frame.</summary>
internal enum ScanStatus
{
    /// <summary>A whole frame (header and payload) is buffered.</summary>
    Done,

    /// <summary>More bytes are needed; never more than the header plus the maximum frame size.</summary>
    NeedMore,

    /// <summary>The header is invalid; the connection cannot be read further.</summary>
    Invalid,
}

/// <summary>Finds frame boundaries in buffered bytes and validates headers before any payload is buffered or allocated.</summary>
internal static class FrameScanner
{
    public static ScanStatus Scan(in ReadOnlySequence<byte> buffer, ProtocolLimits limits, out FrameHeader header, out ProtocolException? error)
    {
        header = default;
        error = null;
        if (buffer.Length < FrameHeader.Size)
        {
            return ScanStatus.NeedMore;
        }

        Span<byte> raw = stackalloc byte[FrameHeader.Size];
        buffer.Slice(0, FrameHeader.Size).CopyTo(raw);
        var length = BinaryPrimitives.ReadUInt32LittleEndian(raw);
        var type = (FrameType)raw[4];
        var flags = (FrameFlags)raw[5];
        var streamId = BinaryPrimitives.ReadUInt32LittleEndian(raw[6..]);
        if (length > (uint)limits.MaxFrameSize)
        {
            error = Fail(ProtocolErrorCode.FrameTooLarge, streamId, $"Frame header on stream {streamId}: payload length {length} exceeds the maximum frame size {limits.MaxFrameSize}.");
            return ScanStatus.Invalid;
        }

        var allowed = AllowedFlags(type);
        if (allowed is null)
        {
            error = Fail(ProtocolErrorCode.UnknownFrameType, streamId, $"Frame header on stream {streamId}: type 0x{(byte)type:X2} is not a known frame type.");
            return ScanStatus.Invalid;
        }

        if ((flags & ~allowed.Value) != 0)
        {
            error = Fail(ProtocolErrorCode.InvalidFlags, streamId, $"Frame header on stream {streamId}: flags 0x{(byte)flags:X2} are not allowed on a {type} frame (allowed: 0x{(byte)allowed.Value:X2}).");
            return ScanStatus.Invalid;
        }

        if (streamId == 0 && type is not (FrameType.Error or FrameType.Ping or FrameType.Pong or FrameType.Continuation))
        {
            error = Fail(ProtocolErrorCode.OutOfOrder, streamId, $"Frame header: a {type} frame on stream 0; stream 0 carries only Error, Ping and Pong.");
            return ScanStatus.Invalid;
        }

        header = new FrameHeader((int)length, type, flags, streamId);
        return buffer.Length - FrameHeader.Size >= length ? ScanStatus.Done : ScanStatus.NeedMore;
    }

    private static FrameFlags? AllowedFlags(FrameType type) => type switch
    {
        FrameType.InfoRequest or FrameType.InfoResponse or FrameType.Ping or FrameType.Pong or FrameType.ForwardResponse
            or FrameType.InferenceStepResult or FrameType.InferenceClose or FrameType.Error
            or FrameType.Continuation => FrameFlags.More,
        FrameType.ForwardRequest or FrameType.BackwardRequest => FrameFlags.More | FrameFlags.HasPrompts | FrameFlags.HasLora | FrameFlags.HasAdapter,
        FrameType.BackwardResponse => FrameFlags.More | FrameFlags.HasPrompts | FrameFlags.HasLora,
        FrameType.InferenceOpen => FrameFlags.More | FrameFlags.HasLora | FrameFlags.HasAdapter,
        FrameType.InferenceStep => FrameFlags.More | FrameFlags.HasPrompts | FrameFlags.HasHypoIds,
        _ => null,
    };

    private static ProtocolException Fail(ProtocolErrorCode code, uint streamId, FormattableString message) =>
        new(code, message.ToString(CultureInfo.InvariantCulture)) { StreamId = streamId, IsConnectionFatal = true };
}
