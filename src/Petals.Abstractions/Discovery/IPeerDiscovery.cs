using Petals.Models;

namespace Petals.Discovery;

/// <summary>
/// Where servers announce the blocks they serve and clients find them, with no central registry (the DHT of
/// <c>Petals.Discovery</c> is the implementation; tests may use others). Implementations are thread-safe.
/// </summary>
public interface IPeerDiscovery
{
    /// <summary>This peer's id: the <see cref="ServerInfo.PeerId"/> its announcements are read back with.</summary>
    string LocalPeerId { get; }

    /// <summary>
    /// Announces <paramref name="info"/> for every block of <c>info.Span</c> of <paramref name="modelId"/>, and lists the
    /// model in the model index. A later announcement of the same peer replaces the earlier one for each block.
    /// </summary>
    /// <param name="modelId">The model id.</param>
    /// <param name="blockCount">The model's number of blocks (for the model index).</param>
    /// <param name="info">The announcement; its <see cref="ServerInfo.PeerId"/> must be <see cref="LocalPeerId"/> and its <see cref="ServerInfo.ExpiresAt"/> is ignored.</param>
    /// <param name="timeToLive">
    /// How long the announcement stays valid unless announced again: readers see it until <c>now + timeToLive</c> (its
    /// <see cref="ServerInfo.ExpiresAt"/>) and no longer. An implementation may keep a replacement with a shorter time to
    /// live as long as the announcement it replaced (the DHT does, so that an older record cannot win over a newer one).
    /// </param>
    /// <param name="cancellationToken">Cancels the announcement.</param>
    /// <returns>How many blocks' announcements were accepted by at least one node.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="modelId"/> or <paramref name="info"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// The peer id is not this peer's, the model id is empty or longer than <see cref="AnnouncementLimits.MaxModelIdBytes"/>
    /// UTF-8 bytes, the span goes past <paramref name="blockCount"/>, or <paramref name="info"/> is not a valid
    /// announcement (empty address, undefined state or dtype, negative or non-finite throughput, negative cache tokens
    /// or round-trip time). Nothing is announced.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="blockCount"/> is not 1 to <see cref="AnnouncementLimits.MaxBlockCount"/>, or
    /// <paramref name="timeToLive"/> is not positive (or is over the implementation's maximum, 6 hours for the DHT).
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    Task<int> AnnounceAsync(string modelId, int blockCount, ServerInfo info, TimeSpan timeToLive, CancellationToken cancellationToken = default);

    /// <summary>Reads every unexpired announcement of the blocks in <paramref name="blocks"/>.</summary>
    /// <param name="modelId">The model id.</param>
    /// <param name="blocks">The blocks to read.</param>
    /// <param name="cancellationToken">Cancels the lookups.</param>
    /// <returns>One entry per block of <paramref name="blocks"/>, in block order (with an empty list where nobody announced).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="modelId"/> is null.</exception>
    /// <exception cref="ArgumentException">The model id is empty or longer than <see cref="AnnouncementLimits.MaxModelIdBytes"/> UTF-8 bytes.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    Task<IReadOnlyList<BlockServers>> GetServersAsync(string modelId, BlockRange blocks, CancellationToken cancellationToken = default);

    /// <summary>Reads the model index: every model some server currently announces.</summary>
    /// <param name="cancellationToken">Cancels the lookup.</param>
    /// <returns>
    /// The models, ordered by id (ordinal), each with the block count its servers announce and how many servers
    /// announce it.
    /// </returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    Task<IReadOnlyList<SwarmModelInfo>> GetModelsAsync(CancellationToken cancellationToken = default);
}
