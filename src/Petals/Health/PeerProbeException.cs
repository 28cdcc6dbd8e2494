namespace Petals.Health;

/// <summary>A probed server is not the peer that was announced at its address.</summary>
internal sealed class PeerProbeException(string message) : Exception(message);
