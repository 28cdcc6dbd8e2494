using System.Globalization;
using Petals.Models;

namespace Petals.Discovery;

/// <summary>
/// <see cref="IPeerDiscovery"/> over a <see cref="DhtNode"/>: each block of a model has the key
/// <c>"{modelId}.{block}"</c> holding one signed <see cref="ServerInfoCodec">server-info</see> sub-record per announcing
/// server, and the key <see cref="ModelIndexKey"/> holds one model entry per server. The node must be started and
/// bootstrapped; this class does not own it. Thread-safe.
/// </summary>
public sealed class DhtPeerDiscovery : IPeerDiscovery
{
    /// <summary>The key of the model index.</summary>
    public const string ModelIndexKey = "_petals.models";

    private readonly TimeProvider _time;
    private readonly int _parallelism;
    private long _lastExpiration;
    private long _malformedRecords;

    /// <summary>Creates the discovery over a started node.</summary>
    /// <param name="node">The DHT node to store and look up with (started and bootstrapped by the caller, who disposes it).</param>
    /// <param name="timeProvider">The clock expirations are computed from; the system clock when null. Use the node's clock.</param>
    /// <param name="maxParallelLookups">How many block keys are stored or looked up at once (1 to 64).</param>
    public DhtPeerDiscovery(DhtNode node, TimeProvider? timeProvider = null, int maxParallelLookups = 8)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxParallelLookups, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxParallelLookups, 64);
        Node = node;
        _time = timeProvider ?? TimeProvider.System;
        _parallelism = maxParallelLookups;
    }

    /// <summary>The node the records are stored and looked up with.</summary>
    public DhtNode Node { get; }

    /// <inheritdoc />
    public string LocalPeerId => Node.Id.ToString();

    /// <summary>How many validly signed records were skipped because their value could not be decoded (another version, or a faulty peer).</summary>
    public long MalformedRecordCount => Interlocked.Read(ref _malformedRecords);

    /// <summary>The key of block <paramref name="block"/> of <paramref name="modelId"/>: <c>"{modelId}.{block}"</c>.</summary>
    /// <param name="modelId">The model id.</param>
    /// <param name="block">The block index.</param>
    public static string GetBlockKey(string modelId, int block)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        ArgumentOutOfRangeException.ThrowIfNegative(block);
        return string.Create(CultureInfo.InvariantCulture, $"{modelId}.{block}");
    }

    /// <inheritdoc />
    /// <remarks>
    /// Every record of one announcement gets the same expiration, <c>now + timeToLive</c>, raised if needed to 1 ms after
    /// the previous announcement's: nodes keep the latest expiration per (key, peer), so each announcement replaces the
    /// earlier one (an "offline" announcement replaces "online" even with a shorter time to live). The records are
    /// stored at the k nodes closest to each key and republished by the node until they expire.
    /// </remarks>
    public async Task<int> AnnounceAsync(string modelId, int blockCount, ServerInfo info, TimeSpan timeToLive, CancellationToken cancellationToken = default)
    {
        AnnouncementLimits.CheckAnnouncement(LocalPeerId, modelId, blockCount, info, timeToLive);
        if (timeToLive > RecordLimits.Default.MaxTimeToLive)
        {
            throw new ArgumentOutOfRangeException(nameof(timeToLive), timeToLive, $"The time to live must be positive and at most {RecordLimits.Default.MaxTimeToLive}.");
        }

        var value = ServerInfoCodec.Encode(info);
        var entry = ServerInfoCodec.EncodeModelEntry(modelId, blockCount);

        // A cancelled caller gets cancellation even when no lookup would notice it (a node alone, an empty table).
        cancellationToken.ThrowIfCancellationRequested();
        var expiresAt = NextExpiration(timeToLive);
        var identity = Node.Identity;
        var records = Enumerable.Range(info.Span.Start, info.Span.Count)
            .Select(b => DhtRecord.Create(identity, GetBlockKey(modelId, b), value, expiresAt))
            .Append(DhtRecord.Create(identity, ModelIndexKey, entry, expiresAt))
            .ToArray();
        var accepted = new bool[records.Length];
        await Parallel.ForEachAsync(
            Enumerable.Range(0, records.Length),
            new ParallelOptions { MaxDegreeOfParallelism = _parallelism, CancellationToken = cancellationToken },
            async (i, ct) => accepted[i] = (await Node.StoreAsync(records[i], ct).ConfigureAwait(false)).AcceptedCount > 0).ConfigureAwait(false);
        return accepted.Take(info.Span.Count).Count(a => a);
    }

    /// <inheritdoc />
    /// <remarks>Records whose value cannot be decoded are skipped and counted in <see cref="MalformedRecordCount"/>.</remarks>
    public async Task<IReadOnlyList<BlockServers>> GetServersAsync(string modelId, BlockRange blocks, CancellationToken cancellationToken = default)
    {
        AnnouncementLimits.CheckModelId(modelId);
        cancellationToken.ThrowIfCancellationRequested();
        var result = new BlockServers[blocks.Count];
        await Parallel.ForEachAsync(
            Enumerable.Range(0, blocks.Count),
            new ParallelOptions { MaxDegreeOfParallelism = _parallelism, CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var block = blocks.Start + i;
                var found = await Node.GetAsync(GetBlockKey(modelId, block), ct).ConfigureAwait(false);
                var servers = new List<ServerInfo>(found.Records.Count);
                foreach (var record in found.Records)
                {
                    try
                    {
                        servers.Add(ServerInfoCodec.Decode(record.Value.Span, record.SubKey.ToString(), record.ExpiresAt));
                    }
                    catch (DhtFormatException)
                    {
                        Interlocked.Increment(ref _malformedRecords);
                    }
                }

                result[i] = new BlockServers(block, servers);
            }).ConfigureAwait(false);
        return result;
    }

    /// <inheritdoc />
    /// <remarks>When servers disagree on a model's block count, the count most of them announce wins (the larger on a tie).</remarks>
    public async Task<IReadOnlyList<SwarmModelInfo>> GetModelsAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var found = await Node.GetAsync(ModelIndexKey, cancellationToken).ConfigureAwait(false);
        var entries = new List<(string ModelId, int BlockCount)>(found.Records.Count);
        foreach (var record in found.Records)
        {
            try
            {
                entries.Add(ServerInfoCodec.DecodeModelEntry(record.Value.Span));
            }
            catch (DhtFormatException)
            {
                Interlocked.Increment(ref _malformedRecords);
            }
        }

        return entries
            .GroupBy(e => e.ModelId, StringComparer.Ordinal)
            .Select(g => new SwarmModelInfo(
                g.Key,
                g.GroupBy(e => e.BlockCount).OrderByDescending(c => c.Count()).ThenByDescending(c => c.Key).First().Key,
                g.Count()))
            .OrderBy(m => m.ModelId, StringComparer.Ordinal)
            .ToArray();
    }

    /// <inheritdoc />
    public override string ToString() => $"DHT discovery through {Node}";

    private DateTimeOffset NextExpiration(TimeSpan timeToLive)
    {
        var wanted = (_time.GetUtcNow() + timeToLive).ToUnixTimeMilliseconds();
        while (true)
        {
            var last = Interlocked.Read(ref _lastExpiration);
            var next = Math.Max(wanted, last + 1);
            if (Interlocked.CompareExchange(ref _lastExpiration, next, last) == last)
            {
                return DateTimeOffset.FromUnixTimeMilliseconds(next);
            }
        }
    }
}
