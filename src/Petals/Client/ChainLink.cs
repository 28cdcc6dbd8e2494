using Petals.Models;

namespace Petals.Client;

/// <summary>A server of a chain, reached through a pooled connection, and the blocks the chain runs there.</summary>
/// <param name="Connection">The connection to the server.</param>
/// <param name="Blocks">The blocks the chain runs there: the server's span or a non-empty range within it.</param>
/// <param name="PeerId">The server's peer id as its announcement gives it (what routes, bans and the pool know it by).</param>
internal readonly record struct ChainLink(RemoteSpanConnection Connection, BlockRange Blocks, string PeerId)
{
    /// <summary>The public description of this link.</summary>
    public RemoteSpanInfo Describe() => new(Connection.Connection.RemoteAddress, PeerId, Connection.Info, Blocks);
}
