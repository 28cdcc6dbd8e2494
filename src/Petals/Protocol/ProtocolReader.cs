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
/// Buffers up to <see cref="PooledBufferLimit"/> bytes come from <see cref="ArrayPool{T}.Shared"/>; larger ones are
/// plain allocations dropped after use, since the shared pool would keep them for the life of the process. The
/// reassembly buffer of a chunked message grows as its chunks arrive, is charged to the server's reassembly budget
/// when one is given, and is given back once the message has been consumed (at the next read) or the reader ends.
/// </remarks>
public sealed class ProtocolReader : IDisposable
{
    private readonly PipeReader _reader;
    private readonly ProtocolLimits _limits;
    private readonly ReassemblyBudget? _budget;
    private byte[]? _assembly;
    private long _assemblyCharged;
    private bool _assemblyConsumed;
    private bool _discarding;
    private bool _refused;
    private volatile bool _inProgress;
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
        : this(reader, limits, budget: null)
    {
    }

    /// <summary>Creates a reader whose reassembly buffers are charged to <paramref name="budget"/> (shared by a server's connections).</summary>
    internal ProtocolReader(PipeReader reader, ProtocolLimits? limits, ReassemblyBudget? budget)
    {
        ArgumentNullException.ThrowIfNull(reader);
        _reader = reader;
        _limits = limits ?? ProtocolLimits.Default;
        _limits.Validate();
        _budget = budget;
    }

    /// <summary>Buffers up to this size are rented from <see cref="ArrayPool{T}.Shared"/>; larger ones are allocated and dropped. 1 MiB.</summary>
    internal const int PooledBufferLimit = 1 << 20;

    /// <summary>
    /// Whether part of a frame or of a chunked message has arrived and the rest has not (as of the last read): what a
    /// minimum receive rate applies to. Safe to read from any thread.
    /// </summary>
    internal bool MessageInProgress => _inProgress;

    /// <summary>Bytes of reassembly buffer this reader holds now (for tests).</summary>
    internal long ReassemblyBytesHeld => Interlocked.Read(ref _assemblyCharged);

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

        if (_assemblyConsumed)
        {
            // The last message was read out of the reassembly buffer and is no longer valid: give the buffer back.
            _assemblyConsumed = false;
            ReleaseAssembly();
        }

        if (_scratch is { Length: > PooledBufferLimit })
        {
            ReturnBuffer(ref _scratch);
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
                _inProgress = !buffer.IsEmpty || _assemblyActive;
                _reader.AdvanceTo(buffer.Start, buffer.End);
                message = null;
                return false;
            }

            var payload = buffer.Slice(FrameHeader.Size, header.PayloadLength);
            var end = payload.End;
            if (header.Type == FrameType.Continuation)
            {
                var wasDiscarding = _discarding;
                FailOrRefuse(buffer, end, Continue(header, payload));
                if (_assemblyActive || wasDiscarding)
                {
                    buffer = buffer.Slice(end);
                    continue;
                }

                _reader.AdvanceTo(end);
                _inProgress = false;
                _assemblyConsumed = true;
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
                FailOrRefuse(buffer, end, Begin(header, payload));
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
                    _scratch = RentBuffer(header.PayloadLength);
                }

                payload.CopyTo(_scratch);
                memory = _scratch.AsMemory(0, header.PayloadLength);
                _reader.AdvanceTo(end);
            }

            _inProgress = false;
            message = Decode(header.StreamId, header.Type, header.Flags, memory);
            return true;
        }
    }

    /// <summary>
    /// A message refused for want of reassembly budget fails only its stream: the frame is consumed and the rest of the
    /// message will be read and dropped. Any other error fails the connection.
    /// </summary>
    private void FailOrRefuse(in ReadOnlySequence<byte> buffer, SequencePosition end, ProtocolException? error)
    {
        if (error is not null && _refused)
        {
            _refused = false;
            _reader.AdvanceTo(end);
            _inProgress = _assemblyActive;
            throw error;
        }

        Fail(buffer, error);
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
        _inProgress = false;
        ReleaseAssembly();
        ReturnBuffer(ref _scratch);
    }

    private static byte[] RentBuffer(int size) =>
        size <= PooledBufferLimit ? ArrayPool<byte>.Shared.Rent(size) : GC.AllocateUninitializedArray<byte>(size);

    private void ReturnBuffer(ref byte[]? buffer)
    {
        if (buffer is { Length: <= PooledBufferLimit })
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        else if (buffer is not null)
        {
            // A larger buffer is dropped: the garbage collector reclaims it (the budget makes sure one runs soon).
            _budget?.OnLargeBufferDropped(buffer.Length);
        }

        buffer = null;
    }

    /// <summary>Gives back the reassembly buffer and its charge.</summary>
    private void ReleaseAssembly()
    {
        var large = _assembly is { Length: > PooledBufferLimit } ? _assembly.Length : 0;
        if (large == 0)
        {
            ReturnBuffer(ref _assembly);
        }

        _assembly = null;
        var charged = Interlocked.Exchange(ref _assemblyCharged, 0);
        if (charged != 0)
        {
            _budget?.Release(charged);
        }

        if (large != 0)
        {
            // Told after the charge is released, so that the budget sees when nothing is held any more.
            _budget?.OnLargeBufferDropped(large);
        }
    }

    /// <summary>Makes the reassembly buffer hold at least <paramref name="needed"/> bytes (growing by doubling up to <paramref name="total"/>), charging the budget; false when the budget refuses.</summary>
    private bool EnsureAssembly(int needed, int total, int filled)
    {
        if (_assembly is not null && _assembly.Length >= needed)
        {
            return true;
        }

        var size = (int)Math.Min(total, Math.Max((long)needed, Math.Max(PooledBufferLimit, (_assembly?.Length ?? 0) * 2L)));
        var grown = size <= PooledBufferLimit ? PooledBufferLimit : size;
        var extra = grown - _assemblyCharged;
        if (extra > 0 && _budget is not null && !_budget.TryReserve(extra))
        {
            return false;
        }

        var buffer = RentBuffer(size);
        if (_assembly is not null)
        {
            _assembly.AsSpan(0, filled).CopyTo(buffer);
        }

        ReturnBuffer(ref _assembly);
        _assembly = buffer;
        if (extra > 0)
        {
            Interlocked.Add(ref _assemblyCharged, extra);
        }

        return true;
    }

    /// <summary>Refuses the message in progress for want of budget: its buffer goes back and its remaining chunks are dropped.</summary>
    private ProtocolException Refuse(int needed)
    {
        var held = _assemblyCharged;
        ReleaseAssembly();
        _discarding = true;
        _refused = true;
        return _budget!.Refused(_assemblyType, _assemblyStream, _assemblyLength, needed - held);
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

        _assemblyActive = true;
        _assemblyLength = (int)total;
        _assemblyFilled = first;
        _assemblyType = header.Type;
        _assemblyFlags = header.Flags;
        _assemblyStream = header.StreamId;
        _discarding = false;
        ReleaseAssembly();
        if (!EnsureAssembly(first, (int)total, 0))
        {
            return Refuse(Math.Min((int)total, Math.Max(first, PooledBufferLimit)));
        }

        payload.Slice(4).CopyTo(_assembly);
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

        var filled = _assemblyFilled;
        _assemblyFilled += header.PayloadLength;
        _assemblyActive = more;
        if (_discarding)
        {
            // The rest of a refused message: read and dropped.
            _discarding = more;
            return null;
        }

        if (!EnsureAssembly(_assemblyFilled, _assemblyLength, filled))
        {
            var error = Refuse(_assemblyFilled);
            _discarding = more;
            return error;
        }

        payload.CopyTo(_assembly.AsSpan(filled));
        return null;
    }

    private ProtocolException Fault(ProtocolException error)
    {
        _fault = error.IsConnectionFatal ? error : new ProtocolException(error.Code, error.Message, error) { StreamId = error.StreamId, IsConnectionFatal = true };
        _assemblyActive = false;
        _discarding = false;
        _refused = false;
        _inProgress = false;
        ReleaseAssembly();
        return _fault;
    }
}
