using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Pipelines;

namespace Petals.Protocol;

/// <summary>
/// Reads frames from a <see cref="PipeReader"/>, reassembles chunked messages and decodes them, enforcing the limits of
/// docs/wire-protocol.md: a frame is rejected on its header alone when too large, and no more than the maximum message
/// size plus one frame is ever buffered for a connection.
/// </summary>
/// <remarks>
/// Not thread-safe: one reader per connection, one read at a time. The reader owns reading from the pipe for its
/// lifetime. Tensors of a returned message point into the reader's buffers and stay valid until the next read or
/// <see cref="Dispose"/>. A <see cref="ProtocolException"/> with <see cref="ProtocolException.IsConnectionFatal"/>
/// leaves the reader faulted (every later read throws it again); other protocol errors only fail that message.
/// </remarks>
public sealed class ProtocolReader : IDisposable
{
    private readonly PipeReader _reader;
    private readonly ProtocolLimits _limits;
    private byte[]? _assembly;
    private int _assemblyLength;
    private int _assemblyFilled;
    private FrameType _assemblyType;
    private FrameFlags _assemblyFlags;
    private uint _assemblyStream;
    private bool _assemblyActive;
    private byte[]? _scratch;
    private bool _advancePending;
    private SequencePosition _advanceTo;
    private ProtocolException? _fault;
    private bool _disposed;

    /// <summary>Creates a reader.</summary>
    /// <param name="reader">The connection's input.</param>
    /// <param name="limits">The limits to enforce; <see cref="ProtocolLimits.Default"/> when null.</param>
    /// <exception cref="ArgumentOutOfRangeException">When the limits are inconsistent.</exception>
    public ProtocolReader(PipeReader reader, ProtocolLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(reader);
        _reader = reader;
        _limits = limits ?? ProtocolLimits.Default;
        _limits.Validate();
    }

    /// <summary>Reads the next message.</summary>
    /// <param name="cancellationToken">Cancels the wait for data.</param>
    /// <returns>The message, or <see langword="null"/> when the peer closed the stream between frames.</returns>
    /// <exception cref="ProtocolException">When a frame is malformed, oversized or out of order, or the stream ends inside a frame.</exception>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellationToken"/> is canceled.</exception>
    /// <exception cref="ObjectDisposedException">When the reader is disposed.</exception>
    public ValueTask<ReceivedMessage?> ReadAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_fault is not null)
        {
            return ValueTask.FromException<ReceivedMessage?>(_fault);
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<ReceivedMessage?>(cancellationToken);
        }

        if (_advancePending)
        {
            _advancePending = false;
            _reader.AdvanceTo(_advanceTo);
        }

        // Fast path without an async state machine: the next frame is often already buffered.
        try
        {
            if (_reader.TryRead(out var result) && TryProcess(result, out var message))
            {
                return new ValueTask<ReceivedMessage?>(message);
            }
        }
        catch (Exception ex) when (ex is ProtocolException or OperationCanceledException)
        {
            return ValueTask.FromException<ReceivedMessage?>(ex);
        }

        return ReadSlowAsync(cancellationToken);
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ReceivedMessage?> ReadSlowAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (TryProcess(result, out var message))
            {
                return message;
            }
        }
    }

    /// <summary>
    /// Consumes frames from one read result: <see langword="true"/> with the message (or null at a clean end of stream),
    /// or <see langword="false"/> when more data is needed (the reader has been advanced, the buffer marked examined).
    /// </summary>
    private bool TryProcess(in ReadResult result, out ReceivedMessage? message)
    {
        var buffer = result.Buffer;
        while (true)
        {
            var status = FrameScanner.Scan(buffer, _limits, out var header, out var error);
            if (status == ScanStatus.Invalid)
            {
                _reader.AdvanceTo(buffer.Start);
                throw Fault(error!);
            }

            if (status == ScanStatus.NeedMore)
            {
                if (result.IsCompleted)
                {
                    _reader.AdvanceTo(buffer.End);
                    if (buffer.IsEmpty && !_assemblyActive)
                    {
                        message = null;
                        return true;
                    }

                    throw Fault(new ProtocolException(
                        ProtocolErrorCode.Truncated,
                        string.Create(CultureInfo.InvariantCulture, $"The stream ended inside a frame ({buffer.Length} bytes of a frame were received{(_assemblyActive ? ", a chunked message was incomplete" : string.Empty)}).")));
                }

                if (result.IsCanceled)
                {
                    _reader.AdvanceTo(buffer.Start);
                    throw new OperationCanceledException("The pending read was canceled.");
                }

                // Never waits for more than one header plus the maximum frame size: the scanner checked the length.
                _reader.AdvanceTo(buffer.Start, buffer.End);
                message = null;
                return false;
            }

            var payload = buffer.Slice(FrameHeader.Size, header.PayloadLength);
            var end = payload.End;
            if (header.Type == FrameType.Continuation)
            {
                Fail(buffer, Continue(header, payload));
                if (_assemblyActive)
                {
                    buffer = buffer.Slice(end);
                    continue;
                }

                _reader.AdvanceTo(end);
                message = Decode(_assemblyStream, _assemblyType, _assemblyFlags, _assembly.AsMemory(0, _assemblyLength));
                return true;
            }

            if (_assemblyActive)
            {
                Fail(buffer, new ProtocolException(
                    ProtocolErrorCode.OutOfOrder,
                    string.Create(CultureInfo.InvariantCulture, $"A {header.Type} frame on stream {header.StreamId} arrived while a chunked {_assemblyType} message on stream {_assemblyStream} was incomplete ({_assemblyFilled} of {_assemblyLength} bytes).")) { StreamId = header.StreamId });
            }

            if ((header.Flags & FrameFlags.More) != 0)
            {
                Fail(buffer, Begin(header, payload));
                buffer = buffer.Slice(end);
                continue;
            }

            ReadOnlyMemory<byte> memory;
            if (payload.IsSingleSegment)
            {
                // Zero copy: the pipe's memory stays ours until the next read, when the frame is consumed.
                memory = payload.First;
                _advancePending = true;
                _advanceTo = end;
            }
            else
            {
                if (_scratch is null || _scratch.Length < header.PayloadLength)
                {
                    ReturnBuffer(ref _scratch);
                    _scratch = ArrayPool<byte>.Shared.Rent(header.PayloadLength);
                }

                payload.CopyTo(_scratch);
                memory = _scratch.AsMemory(0, header.PayloadLength);
                _reader.AdvanceTo(end);
            }

            message = Decode(header.StreamId, header.Type, header.Flags, memory);
            return true;
        }
    }

    private void Fail(in ReadOnlySequence<byte> buffer, ProtocolException? error)
    {
        if (error is not null)
        {
            _reader.AdvanceTo(buffer.Start);
            throw Fault(error);
        }
    }

    /// <summary>Returns the pooled buffers. Does not complete the pipe, which belongs to the connection.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        ReturnBuffer(ref _assembly);
        ReturnBuffer(ref _scratch);
    }

    private static void ReturnBuffer(ref byte[]? buffer)
    {
        if (buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            buffer = null;
        }
    }

    private ReceivedMessage Decode(uint streamId, FrameType type, FrameFlags flags, ReadOnlyMemory<byte> payload) =>
        new(streamId, MessageDecoder.Decode(type, flags & ~FrameFlags.More, payload, _limits, streamId));

    private ProtocolException? Begin(FrameHeader header, ReadOnlySequence<byte> payload)
    {
        if (header.PayloadLength < 4)
        {
            return new ProtocolException(ProtocolErrorCode.Truncated, string.Create(CultureInfo.InvariantCulture, $"{header.Type} frame on stream {header.StreamId}: field 'totalLength' of a chunked message needs 4 bytes but the frame holds {header.PayloadLength}.")) { StreamId = header.StreamId };
        }

        Span<byte> raw = stackalloc byte[4];
        payload.Slice(0, 4).CopyTo(raw);
        var total = BinaryPrimitives.ReadUInt32LittleEndian(raw);
        var first = header.PayloadLength - 4;
        if (total > (uint)_limits.MaxMessageSize)
        {
            return new ProtocolException(ProtocolErrorCode.MessageTooLarge, string.Create(CultureInfo.InvariantCulture, $"{header.Type} frame on stream {header.StreamId}: field 'totalLength' is {total}, above the maximum message size {_limits.MaxMessageSize}.")) { StreamId = header.StreamId };
        }

        if (total <= (uint)first)
        {
            return new ProtocolException(ProtocolErrorCode.MalformedFrame, string.Create(CultureInfo.InvariantCulture, $"{header.Type} frame on stream {header.StreamId}: field 'totalLength' is {total} but the first chunk already holds {first} bytes; a chunked message must need more than one frame.")) { StreamId = header.StreamId };
        }

        if (_assembly is null || _assembly.Length < total)
        {
            ReturnBuffer(ref _assembly);
            _assembly = ArrayPool<byte>.Shared.Rent((int)total);
        }

        payload.Slice(4).CopyTo(_assembly);
        _assemblyActive = true;
        _assemblyLength = (int)total;
        _assemblyFilled = first;
        _assemblyType = header.Type;
        _assemblyFlags = header.Flags;
        _assemblyStream = header.StreamId;
        return null;
    }

    private ProtocolException? Continue(FrameHeader header, ReadOnlySequence<byte> payload)
    {
        if (!_assemblyActive)
        {
            return new ProtocolException(ProtocolErrorCode.OutOfOrder, string.Create(CultureInfo.InvariantCulture, $"A Continuation frame on stream {header.StreamId} arrived with no chunked message in progress.")) { StreamId = header.StreamId };
        }

        if (header.StreamId != _assemblyStream)
        {
            return new ProtocolException(ProtocolErrorCode.OutOfOrder, string.Create(CultureInfo.InvariantCulture, $"A Continuation frame on stream {header.StreamId} arrived while the chunked {_assemblyType} message in progress is on stream {_assemblyStream}.")) { StreamId = header.StreamId };
        }

        var left = _assemblyLength - _assemblyFilled;
        var more = (header.Flags & FrameFlags.More) != 0;
        if (header.PayloadLength == 0 || header.PayloadLength > left || (more && header.PayloadLength == left) || (!more && header.PayloadLength != left))
        {
            return new ProtocolException(ProtocolErrorCode.MalformedFrame, string.Create(CultureInfo.InvariantCulture, $"Continuation frame on stream {header.StreamId}: {header.PayloadLength} bytes with MORE={more} do not fit the {left} bytes left of the {_assemblyLength}-byte {_assemblyType} message.")) { StreamId = header.StreamId };
        }

        payload.CopyTo(_assembly.AsSpan(_assemblyFilled));
        _assemblyFilled += header.PayloadLength;
        _assemblyActive = more;
        return null;
    }

    private ProtocolException Fault(ProtocolException error)
    {
        _fault = error.IsConnectionFatal ? error : new ProtocolException(error.Code, error.Message, error) { StreamId = error.StreamId, IsConnectionFatal = true };
        _assemblyActive = false;
        return _fault;
    }
}
