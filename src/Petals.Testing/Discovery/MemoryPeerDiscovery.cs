using Petals.Discovery;
using Petals.Models;

namespace Petals.Testing.Discovery;

/// <summary>
/// One peer of a <see cref="MemoryDiscoveryNetwork"/>: an in-memory <see cref="IPeerDiscovery"/> for tests and
/// simulations. It refuses bad input with the exceptions the contract documents
/// (<see cref="AnnouncementLimits.CheckAnnouncement"/>, as the DHT does), keeps a snapshot of each announcement, and
/// reads what every peer of its network announced and has not expired. Create peers with
/// <see cref="MemoryDiscoveryNetwork.CreatePeer"/>.
/// </summary>
/// <remarks>
/// Thread-safe. The operations complete synchronously: argument errors are thrown by the call, a cancelled token gives
/// a cancelled task. Unlike the DHT it has no maximum time to live and no limits on text lengths or round-trip
/// entries, a replacement with a shorter time to live expires when its own time to live ends, and one peer may list
/// several models in the model index.
/// </remarks>
public sealed class MemoryPeerDiscovery : IPeerDiscovery
{
    internal MemoryPeerDiscovery(MemoryDiscoveryNetwork network, string peerId)
    {
        Network = network;
        LocalPeerId = peerId;
    }

    /// <summary>The swarm this peer announces to and reads from.</summary>
    public MemoryDiscoveryNetwork Network { get; }

    /// <inheritdoc />
    public string LocalPeerId { get; }

    /// <inheritdoc />
    /// <returns>The number of blocks of the span (every block is accepted).</returns>
    public Task<int> AnnounceAsync(string modelId, int blockCount, ServerInfo info, TimeSpan timeToLive, CancellationToken cancellationToken = default)
    {
        AnnouncementLimits.CheckAnnouncement(LocalPeerId, modelId, blockCount, info, timeToLive);
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<int>(cancellationToken);
        }

        var now = Network.TimeProvider.GetUtcNow();
        var expiresAt = timeToLive >= DateTimeOffset.MaxValue - now ? DateTimeOffset.MaxValue : now + timeToLive;

        // A snapshot: the caller may reuse or change its round-trip table after announcing, as the DHT encodes it at once.
        var rtts = info.NextServerRtts is null ? new Dictionary<string, TimeSpan>() : new Dictionary<string, TimeSpan>(info.NextServerRtts);
        var stored = info with
        {
            Version = info.Version ?? string.Empty,
            NextServerRtts = rtts.AsReadOnly(),
            ExpiresAt = expiresAt,
        };
        Network.Announce(modelId, blockCount, stored);
        return Task.FromResult(info.Span.Count);
    }

    /// <inheritdoc />
    /// <remarks>Each block's servers are ordered by peer id (ordinal).</remarks>
    public Task<IReadOnlyList<BlockServers>> GetServersAsync(string modelId, BlockRange blocks, CancellationToken cancellationToken = default)
    {
        AnnouncementLimits.CheckModelId(modelId);
        return cancellationToken.IsCancellationRequested
            ? Task.FromCanceled<IReadOnlyList<BlockServers>>(cancellationToken)
            : Task.FromResult<IReadOnlyList<BlockServers>>(Network.GetServers(modelId, blocks));
    }

    /// <inheritdoc />
    /// <remarks>When servers disagree on a model's block count, the count most of them announce wins (the larger on a tie).</remarks>
    public Task<IReadOnlyList<SwarmModelInfo>> GetModelsAsync(CancellationToken cancellationToken = default)
    {
        return cancellationToken.IsCancellationRequested
            ? Task.FromCanceled<IReadOnlyList<SwarmModelInfo>>(cancellationToken)
            : Task.FromResult<IReadOnlyList<SwarmModelInfo>>(Network.GetModels());
    }

    /// <inheritdoc />
    public override string ToString() => $"in-memory discovery peer {LocalPeerId}";
}
