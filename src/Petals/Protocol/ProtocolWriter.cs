using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Pipelines;

namespace Petals.Protocol;

/// <summary>
/// Writes messages as frames into a <see cref="PipeWriter"/>: small messages are encoded straight into the pipe's
/// memory (tensor values converted from the caller's floats in place); messages larger than the frame limit are
/// chunked (docs/wire-protocol.md, section 4). <see cref="Write"/> only buffers: call <see cref="FlushAsync"/> once
/// per batch of writes.
/// </summary>
/// <remarks>Not thread-safe: serialize writers of one connection (one write and one flush at a time).</remarks>
public sealed class ProtocolWriter
{
    private readonly PipeWriter _writer;
    private readonly ProtocolLimits _limits;
    private readonly int _frameLimit;

    /// <summary>Creates a writer.</summary>
    /// <param name="writer">The connection's output.</param>
    /// <param name="limits">This side's limits; <see cref="ProtocolLimits.Default"/> when null.</param>
    /// <param name="peerMaxFrameSize">The peer's advertised maximum frame size (from its preamble); frames never exceed it nor <paramref name="limits"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="peerMaxFrameSize"/> is below <see cref="ProtocolLimits.MinFrameSize"/> or the limits are inconsistent.</exception>
    public ProtocolWriter(PipeWriter writer, ProtocolLimits? limits = null, int peerMaxFrameSize = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentOutOfRangeException.ThrowIfLessThan(peerMaxFrameSize, ProtocolLimits.MinFrameSize);
        _writer = writer;
        _limits = limits ?? ProtocolLimits.Default;
        _limits.Validate();
        _frameLimit = Math.Min(_limits.MaxFrameSize, peerMaxFrameSize);
    }

    /// <summary>The largest frame payload this writer sends.</summary>
    public int FrameLimit => _frameLimit;

    /// <summary>The bytes a message takes on the wire, frame headers included.</summary>
    /// <param name="message">The message.</param>
    /// <returns>The total size of its frames.</returns>
    public long GetWireSize(ProtocolMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        long size = message.GetPayloadSize(_limits);
        if (size <= _frameLimit)
        {
            return FrameHeader.Size + size;
        }

        var chunkBytes = size + 4;
        var frames = (chunkBytes + _frameLimit - 1) / _frameLimit;
        return (frames * FrameHeader.Size) + chunkBytes;
    }

    /// <summary>Buffers <paramref name="message"/> as one frame, or as a chunked message when it exceeds the frame limit.</summary>
    /// <param name="streamId">The stream (call) id; 0 only for Error, Ping and Pong.</param>
    /// <param name="message">The message.</param>
    /// <exception cref="ArgumentException">When a field exceeds a limit (string, hypo ids) or stream 0 is used for a call message.</exception>
    /// <exception cref="ProtocolException">With <see cref="ProtocolErrorCode.MessageTooLarge"/> when the message exceeds the maximum message size.</exception>
    public void Write(uint streamId, ProtocolMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (streamId == 0 && message.Type is not (FrameType.Error or FrameType.Ping or FrameType.Pong))
        {
            throw new ArgumentException($"A {message.Type} message needs a stream id above 0.", nameof(streamId));
        }

        var size = message.GetPayloadSize(_limits);
        if (size <= _frameLimit)
        {
            var span = _writer.GetSpan(FrameHeader.Size + size);
            new FrameHeader(size, message.Type, message.Flags, streamId).Write(span);
            var payload = new WireWriter(span.Slice(FrameHeader.Size, size));
            message.WritePayload(ref payload);
            Check(payload.Written, size, message);
            _writer.Advance(FrameHeader.Size + size);
            return;
        }

        if (size > _limits.MaxMessageSize)
        {
            throw new ProtocolException(ProtocolErrorCode.MessageTooLarge, string.Create(CultureInfo.InvariantCulture, $"A {message.Type} message of {size} bytes exceeds the maximum message size {_limits.MaxMessageSize}.")) { StreamId = streamId };
        }

        var buffer = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            var payload = new WireWriter(buffer.AsSpan(0, size));
            message.WritePayload(ref payload);
            Check(payload.Written, size, message);
            WriteChunks(streamId, message.Type, message.Flags, buffer.AsSpan(0, size));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Sends the buffered frames.</summary>
    /// <param name="cancellationToken">Cancels the flush.</param>
    /// <returns>The flush result (completed when the reader side is gone).</returns>
    public ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => _writer.FlushAsync(cancellationToken);

    /// <summary>Buffers <paramref name="message"/> and flushes.</summary>
    /// <param name="streamId">The stream (call) id.</param>
    /// <param name="message">The message.</param>
    /// <param name="cancellationToken">Cancels the flush.</param>
    /// <returns>The flush result.</returns>
    public ValueTask<FlushResult> SendAsync(uint streamId, ProtocolMessage message, CancellationToken cancellationToken = default)
    {
        Write(streamId, message);
        return FlushAsync(cancellationToken);
    }

    private static void Check(int written, int size, ProtocolMessage message)
    {
        if (written != size)
        {
            throw new InvalidOperationException($"A {message.Type} message wrote {written} bytes but declared {size}.");
        }
    }

    private void WriteChunks(uint streamId, FrameType type, FrameFlags flags, ReadOnlySpan<byte> payload)
    {
        var first = _frameLimit - 4;
        var span = _writer.GetSpan(FrameHeader.Size + _frameLimit);
        new FrameHeader(_frameLimit, type, flags | FrameFlags.More, streamId).Write(span);
        BinaryPrimitives.WriteUInt32LittleEndian(span[FrameHeader.Size..], (uint)payload.Length);
        payload[..first].CopyTo(span[(FrameHeader.Size + 4)..]);
        _writer.Advance(FrameHeader.Size + _frameLimit);
        payload = payload[first..];
        while (!payload.IsEmpty)
        {
            var part = Math.Min(payload.Length, _frameLimit);
            var more = part < payload.Length;
            span = _writer.GetSpan(FrameHeader.Size + part);
            new FrameHeader(part, FrameType.Continuation, more ? FrameFlags.More : FrameFlags.None, streamId).Write(span);
            payload[..part].CopyTo(span[FrameHeader.Size..]);
            _writer.Advance(FrameHeader.Size + part);
            payload = payload[part..];
        }
    }
}
