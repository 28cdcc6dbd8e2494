namespace Petals.Protocol;

/// <summary>The outcome of a successful handshake.</summary>
/// <param name="Remote">The peer's preamble.</param>
/// <param name="VersionMinor">The minor version both sides use: the smaller of the two.</param>
/// <param name="FrameLimit">The largest frame payload to send to the peer: the smaller of its maximum and ours.</param>
public sealed record HandshakeResult(ConnectionPreamble Remote, ushort VersionMinor, int FrameLimit);
