using System.Globalization;

namespace Petals.Protocol;

/// <summary>
/// Enforces the call rules of docs/wire-protocol.md (section 5, "Calls") for the messages one side receives: a stream
/// starts with a request, an inference stream carries steps only after its open, unary calls carry nothing after the
/// request, and the number of open streams is bounded. A violation fails only the stream at fault.
/// </summary>
/// <remarks>
/// Use one tracker per connection and per role (<see cref="CallRole.Callee"/> on the side that serves calls,
/// <see cref="CallRole.Caller"/> on the side that makes them). Not thread-safe: call it from the connection's read loop
/// and from the code that ends calls on the same logical thread, or serialize access.
/// </remarks>
public sealed class CallTracker
{
    private readonly Dictionary<uint, CallState> _streams = [];
    private readonly CallRole _role;
    private readonly int _maxStreams;

    /// <summary>Creates a tracker.</summary>
    /// <param name="role">Which side of the calls this tracker watches.</param>
    /// <param name="maxStreams">The most calls open at once; further requests fail with <see cref="ProtocolErrorCode.Busy"/>. Default 1024.</param>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="maxStreams"/> is below 1.</exception>
    public CallTracker(CallRole role, int maxStreams = 1024)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxStreams);
        _role = role;
        _maxStreams = maxStreams;
    }

    private enum CallState
    {
        Unary,
        Inference,
    }

    /// <summary>The number of calls currently open.</summary>
    public int OpenCalls => _streams.Count;

    /// <summary>Checks a received message against the state of its stream and updates the state.</summary>
    /// <param name="streamId">The stream the message arrived on.</param>
    /// <param name="message">The message.</param>
    /// <exception cref="ProtocolException">
    /// <see cref="ProtocolErrorCode.OutOfOrder"/> when the message is not allowed at this point of its stream, or
    /// <see cref="ProtocolErrorCode.Busy"/> when too many calls are open. The stream's state is dropped: answer with an
    /// error frame on that stream; the connection stays usable.
    /// </exception>
    public void OnReceived(uint streamId, ProtocolMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (streamId == 0)
        {
            // The scanner already restricts stream 0 to Error, Ping and Pong: connection-level, no call state.
            return;
        }

        var known = _streams.TryGetValue(streamId, out var state);
        if (_role == CallRole.Callee)
        {
            switch (message.Type)
            {
                case FrameType.InfoRequest or FrameType.Ping or FrameType.ForwardRequest or FrameType.BackwardRequest or FrameType.InferenceOpen:
                    if (known)
                    {
                        throw Fail(streamId, message, state == CallState.Inference ? "the stream already carries an inference session" : "the stream already carries an unanswered call");
                    }

                    if (_streams.Count >= _maxStreams)
                    {
                        throw new ProtocolException(ProtocolErrorCode.Busy, string.Create(CultureInfo.InvariantCulture, $"{message.Type} on stream {streamId}: {_streams.Count} calls are already open on this connection (limit {_maxStreams}).")) { StreamId = streamId };
                    }

                    _streams[streamId] = message.Type == FrameType.InferenceOpen ? CallState.Inference : CallState.Unary;
                    return;
                case FrameType.InferenceStep:
                    if (!known || state != CallState.Inference)
                    {
                        throw Fail(streamId, message, "no inference session was opened on the stream");
                    }

                    return;
                case FrameType.InferenceClose:
                    if (!known || state != CallState.Inference)
                    {
                        throw Fail(streamId, message, "no inference session was opened on the stream");
                    }

                    _streams.Remove(streamId);
                    return;
                case FrameType.Error:
                    // The caller abandons its call.
                    _streams.Remove(streamId);
                    return;
                default:
                    throw Fail(streamId, message, "a callee receives requests, steps, closes and errors only");
            }
        }

        switch (message.Type)
        {
            case FrameType.InfoResponse or FrameType.Pong or FrameType.ForwardResponse or FrameType.BackwardResponse:
                if (!known || state != CallState.Unary)
                {
                    throw Fail(streamId, message, "no unary call is waiting for an answer on the stream");
                }

                _streams.Remove(streamId);
                return;
            case FrameType.InferenceStepResult:
                if (!known || state != CallState.Inference)
                {
                    throw Fail(streamId, message, "no inference session is open on the stream");
                }

                return;
            case FrameType.Error:
                if (!known)
                {
                    throw Fail(streamId, message, "no call is open on the stream");
                }

                if (!IsStepRefusal(state, message))
                {
                    _streams.Remove(streamId);
                }

                return;
            default:
                throw Fail(streamId, message, "a caller receives responses, step results and errors only");
        }
    }

    /// <summary>Records a message this side sends, opening or ending calls (a caller's requests, a callee's answers).</summary>
    /// <param name="streamId">The stream the message goes on.</param>
    /// <param name="message">The message.</param>
    /// <exception cref="InvalidOperationException">When a caller reuses the id of a call that is still open.</exception>
    public void OnSent(uint streamId, ProtocolMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (streamId == 0)
        {
            return;
        }

        if (_role == CallRole.Caller)
        {
            switch (message.Type)
            {
                case FrameType.InfoRequest or FrameType.Ping or FrameType.ForwardRequest or FrameType.BackwardRequest or FrameType.InferenceOpen:
                    if (!_streams.TryAdd(streamId, message.Type == FrameType.InferenceOpen ? CallState.Inference : CallState.Unary))
                    {
                        throw new InvalidOperationException($"Stream {streamId} still carries an open call; use a fresh stream id for a {message.Type}.");
                    }

                    return;
                case FrameType.InferenceClose or FrameType.Error:
                    _streams.Remove(streamId);
                    return;
                default:
                    return;
            }
        }

        // A callee's answer ends a unary call; an error ends any call, except a refused step on an inference stream.
        if (message.Type is FrameType.InfoResponse or FrameType.Pong or FrameType.ForwardResponse or FrameType.BackwardResponse
            || (message.Type == FrameType.Error && !(_streams.TryGetValue(streamId, out var state) && IsStepRefusal(state, message))))
        {
            _streams.Remove(streamId);
        }
    }

    /// <summary>
    /// Whether <paramref name="message"/> is an error that refuses one step of an inference session and leaves the call
    /// open (<see cref="ProtocolErrorCode.NonFiniteInput"/>): nothing was computed, the session goes on.
    /// </summary>
    /// <param name="message">An error message.</param>
    /// <returns><see langword="true"/> for a step refusal.</returns>
    public static bool IsStepRefusal(ProtocolMessage message) =>
        message is ErrorMessage error && error.Code == ProtocolErrorCode.NonFiniteInput;

    private static bool IsStepRefusal(CallState state, ProtocolMessage message) => state == CallState.Inference && IsStepRefusal(message);

    private ProtocolException Fail(uint streamId, ProtocolMessage message, string reason)
    {
        _streams.Remove(streamId);
        return new ProtocolException(ProtocolErrorCode.OutOfOrder, string.Create(CultureInfo.InvariantCulture, $"{message.Type} on stream {streamId} is out of order: {reason}.")) { StreamId = streamId };
    }
}
