namespace Petals.Protocol;

/// <summary>A message read from a connection, with the stream it arrived on.</summary>
/// <param name="StreamId">The stream (call) id; 0 for the connection.</param>
/// <param name="Message">The decoded message; its tensors are valid until the reader's next read.</param>
public readonly record struct ReceivedMessage(uint StreamId, ProtocolMessage Message);
