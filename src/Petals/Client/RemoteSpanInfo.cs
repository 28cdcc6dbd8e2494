using Petals.Models;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <summary>One server of a remote chain, as its info call described it.</summary>
/// <param name="Address">Where the server listens.</param>
/// <param name="PeerId">The peer id the server announced.</param>
/// <param name="Info">The server's answer to the info call (span, hidden size, codecs, free cache, limits).</param>
public sealed record RemoteSpanInfo(PeerAddress Address, string PeerId, InfoResponse Info)
{
    /// <summary>The blocks the server runs for this chain.</summary>
    public BlockRange Blocks => Info.Blocks;

    /// <inheritdoc />
    public override string ToString() => $"{PeerId} at {Address} (blocks {Blocks})";
}
