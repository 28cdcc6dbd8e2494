namespace Petals.Protocol;

/// <summary>Receives the calls and answers that arrive on a <see cref="ProtocolConnection"/>.</summary>
/// <remarks>
/// Both methods run on the connection's read loop, one at a time, in the order the frames arrived. They must return
/// quickly: the next frame is not read until they do, so long work (compute) is queued elsewhere.
/// </remarks>
public interface IProtocolMessageHandler
{
    /// <summary>
    /// Handles one message received on a stream above 0 (pings on stream 0 are answered by the connection). The message
    /// already passed the call rules of docs/wire-protocol.md (section 5).
    /// </summary>
    /// <param name="connection">The connection the message arrived on (to answer with <see cref="ProtocolConnection.SendAsync"/>).</param>
    /// <param name="streamId">The message's stream.</param>
    /// <param name="message">
    /// The message. Its tensors point into the connection's receive buffers and are valid only until this method's task
    /// completes: decode them (<see cref="WireTensor.CopyTo"/>) before then.
    /// </param>
    /// <param name="cancellationToken">Canceled when the connection stops reading.</param>
    /// <returns>A task that completes when the message's tensors are no longer needed.</returns>
    ValueTask OnMessageAsync(ProtocolConnection connection, uint streamId, ProtocolMessage message, CancellationToken cancellationToken);

    /// <summary>
    /// Tells the handler that a call failed on receive (a message out of order, too many calls, a malformed payload):
    /// the connection has already sent the Error frame on that stream. The handler drops the call's state.
    /// </summary>
    /// <param name="connection">The connection.</param>
    /// <param name="streamId">The failed call's stream.</param>
    /// <param name="failure">What was wrong.</param>
    void OnStreamFailed(ProtocolConnection connection, uint streamId, ProtocolException failure);
}
