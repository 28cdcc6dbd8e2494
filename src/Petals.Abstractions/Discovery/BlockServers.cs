namespace Petals.Discovery;

/// <summary>The servers announced for one block of a model.</summary>
/// <param name="Block">The block index.</param>
/// <param name="Servers">Every unexpired announcement for the block, one per server, in any state.</param>
public sealed record BlockServers(int Block, IReadOnlyList<ServerInfo> Servers);
