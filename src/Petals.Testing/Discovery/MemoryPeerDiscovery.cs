using System.Globalization;
using Petals.Discovery;
using Petals.Models;

namespace Petals.Testing.Discovery;

/// <summary>
/// One peer of a <see cref="MemoryDiscoveryNetwork"/>: an in-memory <see cref="IPeerDiscovery"/> for tests and
/// simulations. It refuses what the DHT refuses (a foreign peer id, a bad model id, block count, span or time to live,
/// an invalid announcement) with the same exceptions, keeps a snapshot of each announcement, and reads what every peer
/// of its network announced and has not expired. Create peers with <see cref="MemoryDiscoveryNetwork.CreatePeer"/>.
/// </summary>
/// <remarks>
/// Thread-safe. The operations complete synchronously: argument errors are thrown by the call, a cancelled token gives
/// a cancelled task. Unlike the DHT it has no maximum time to live and no limits on text lengths or round-trip entries, and
/// a replacement with a shorter time to live expires when its own time to live ends.
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
        ArgumentNullException.ThrowIfNull(info);
        CheckModelId(modelId);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(blockCount, AnnouncementLimits.MaxBlockCount);
        if (info.PeerId != LocalPeerId)
        {
            throw new ArgumentException($"The announcement's peer id '{info.PeerId}' is not this peer's id '{LocalPeerId}'.", nameof(info));
        }

        if (info.Span.End > blockCount)
        {
            throw new ArgumentException($"Span {info.Span} goes past the model's {blockCount} blocks.", nameof(info));
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeToLive, TimeSpan.Zero);
        CheckInfo(info);
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
        CheckModelId(modelId);
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

    private static void CheckModelId(string modelId)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        if (System.Text.Encoding.UTF8.GetByteCount(modelId) > AnnouncementLimits.MaxModelIdBytes)
        {
            throw new ArgumentException($"The model id is longer than {AnnouncementLimits.MaxModelIdBytes} UTF-8 bytes.", nameof(modelId));
        }
    }

    // The checks the DHT's encoding makes, so that an announcement accepted here is one a real swarm carries.
    private static void CheckInfo(ServerInfo info)
    {
        string? fault = null;
        if (info.Address.IsEmpty)
        {
            fault = "The server address is empty.";
        }
        else if (!Enum.IsDefined(info.State))
        {
            fault = $"Server state {(int)info.State} is not defined.";
        }
        else if (!Enum.IsDefined(info.DType))
        {
            fault = $"DType {(int)info.DType} is not defined.";
        }
        else if (!double.IsFinite(info.Throughput) || info.Throughput < 0)
        {
            fault = $"Throughput {info.Throughput.ToString(CultureInfo.InvariantCulture)} is not a finite non-negative number.";
        }
        else if (info.CacheTokensLeft < 0)
        {
            fault = $"Cache tokens left {info.CacheTokensLeft} is negative.";
        }
        else if (info.NextServerRtts?.FirstOrDefault(p => p.Value < TimeSpan.Zero) is { Key: not null } negative)
        {
            fault = $"The round-trip time to {negative.Key} is negative.";
        }

        if (fault is not null)
        {
            throw new ArgumentException(fault, nameof(info));
        }
    }
}
