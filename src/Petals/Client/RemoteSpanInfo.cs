using Petals.Models;
using Petals.Protocol;
using Petals.Transport;

namespace Petals.Client;

/// <summary>One server of a remote chain, as its info call described it, and the blocks the chain asks it for.</summary>
/// <param name="Address">Where the server listens.</param>
/// <param name="PeerId">The peer id the server announced.</param>
/// <param name="Info">The server's answer to the info call (span, hidden size, codecs, free cache, limits).</param>
public sealed record RemoteSpanInfo(PeerAddress Address, string PeerId, InfoResponse Info)
{
    /// <summary>Describes a server of which the chain uses only <paramref name="blocks"/>, a range within its span.</summary>
    /// <param name="address">Where the server listens.</param>
    /// <param name="peerId">The peer id the server announced.</param>
    /// <param name="info">The server's answer to the info call.</param>
    /// <param name="blocks">The blocks the chain asks the server for: a non-empty range within <see cref="InfoResponse.Blocks"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="blocks"/> is empty or not within the server's span.</exception>
    public RemoteSpanInfo(PeerAddress address, string peerId, InfoResponse info, BlockRange blocks)
        : this(address, peerId, info)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (blocks.Count <= 0 || blocks.Start < info.Blocks.Start || blocks.End > info.Blocks.End)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, $"Blocks {blocks} are not a non-empty range within the server's span {info.Blocks}.");
        }

        Blocks = blocks;
    }

    /// <summary>The blocks the server runs for this chain: its whole span (<see cref="InfoResponse.Blocks"/>) or a range within it.</summary>
    public BlockRange Blocks { get; } = Info.Blocks;

    /// <inheritdoc />
    public override string ToString() => $"{PeerId} at {Address} (blocks {Blocks})";
}
