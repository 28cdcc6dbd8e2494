using System.Collections.Concurrent;
using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// Keeps a node's view of the network and its own records current: joins through initial peers, pings the least
/// recently seen member of a full bucket before evicting it, remembers lost and initial peers and pings them again,
/// refreshes idle buckets, republishes the records given to <see cref="DhtNode.StoreAsync"/> and sweeps expired
/// records from storage. The refresh, republication and sweep each run as a <see cref="PeriodicJob"/> on the node's
/// clock. Thread-safe.
/// </summary>
internal sealed class DhtMaintenance : IAsyncDisposable
{
    private readonly NodeId _id;
    private readonly DhtNodeOptions _options;
    private readonly TimeProvider _time;
    private readonly RoutingTable _routing;
    private readonly RecordStorage _storage;
    private readonly DhtRpcClient _client;
    private readonly DhtLookup _lookup;
    private readonly CancellationToken _stop;
    private readonly ConcurrentDictionary<(string Key, NodeId SubKey), DhtRecord> _ownRecords = new();
    private readonly ConcurrentDictionary<NodeId, byte> _evictionPings = new();
    private readonly ConcurrentDictionary<NodeId, byte> _verifications = new();
    private readonly ConcurrentDictionary<NodeId, LostPeer> _lostPeers = new();
    private readonly Lock _initialGate = new();
    private readonly Dictionary<PeerAddress, NodeId?> _initialPeers = [];
    private readonly BackgroundTasks _pings = new();
    private PeriodicJob[] _jobs = [];
    private long _verified;
    private long _rejected;

    /// <summary>Creates the maintenance of one node; <see cref="StartJobs"/> starts its periodic work.</summary>
    /// <param name="id">The local node's id.</param>
    /// <param name="options">The node's settings (intervals, k, lost-peer bounds).</param>
    /// <param name="timeProvider">The clock of the periodic jobs and of the lost peers' retention.</param>
    /// <param name="routing">The node's routing table.</param>
    /// <param name="storage">The node's record storage (swept periodically).</param>
    /// <param name="client">Sends pings.</param>
    /// <param name="lookup">Runs the self lookup, bucket refreshes and publications.</param>
    /// <param name="stop">Cancelled when the node stops: no peer is remembered as lost from then on.</param>
    public DhtMaintenance(NodeId id, DhtNodeOptions options, TimeProvider timeProvider, RoutingTable routing, RecordStorage storage, DhtRpcClient client, DhtLookup lookup, CancellationToken stop)
    {
        _id = id;
        _options = options;
        _time = timeProvider;
        _routing = routing;
        _storage = storage;
        _client = client;
        _lookup = lookup;
        _stop = stop;
    }

    /// <summary>How many address verifications are in flight.</summary>
    public int PendingVerifications => _verifications.Count;

    /// <summary>How many requesters entered the table (or moved) after their claimed address was verified.</summary>
    public long ContactsVerified => Interlocked.Read(ref _verified);

    /// <summary>How many requesters were kept out: claimed host not the connecting one, or verification not answered by their id.</summary>
    public long ContactsRejected => Interlocked.Read(ref _rejected);

    /// <summary>The contacts that failed recently while in the routing table, most recent last.</summary>
    public IReadOnlyList<DhtContact> LostPeers => _lostPeers.Values.OrderBy(p => p.LostAt).Select(p => p.Contact).ToArray();

    /// <summary>
    /// Starts the periodic jobs, in this order: the refresh every <see cref="DhtNodeOptions.RefreshInterval"/>, the
    /// republication and the storage sweep every <see cref="DhtNodeOptions.RepublishInterval"/>.
    /// </summary>
    public void StartJobs() => _jobs =
    [
        new PeriodicJob(_time, _options.RefreshInterval, RefreshAsync),
        new PeriodicJob(_time, _options.RepublishInterval, RepublishAsync),
        new PeriodicJob(_time, _options.RepublishInterval, _ =>
        {
            _storage.Sweep();
            return Task.CompletedTask;
        }),
    ];

    /// <summary>Stops the periodic jobs (waiting for a running one) and waits for the eviction pings in flight.</summary>
    /// <returns>A task that completes when no maintenance work is left.</returns>
    public async ValueTask DisposeAsync()
    {
        foreach (var job in _jobs)
        {
            await job.DisposeAsync().ConfigureAwait(false);
        }

        await _pings.WhenAllAsync().ConfigureAwait(false);
    }

    /// <summary>Remembers one of the node's own records for republication (the latest expiration per key and sub-key wins).</summary>
    /// <param name="record">A valid record signed by the node.</param>
    public void Remember(DhtRecord record) =>
        _ownRecords.AddOrUpdate((record.Key, record.SubKey), record, (_, old) => old.ExpirationUnixMilliseconds > record.ExpirationUnixMilliseconds ? old : record);

    /// <summary>
    /// Pings every peer (refusing one whose address names a peer id other than the id it answers with, or a peer id
    /// that is not a node id) and remembers it as an initial peer; then, if any answered, looks up the node's own id
    /// and refreshes every bucket from the nearest non-empty one up (<see cref="DhtNodeOptions.RefreshBucketsOnJoin"/>).
    /// </summary>
    /// <param name="peers">Addresses of nodes already in the network, optionally with the peer id they must prove.</param>
    /// <param name="cancellationToken">Cancels the join.</param>
    /// <returns>Each distinct peer's outcome.</returns>
    public async Task<DhtJoinResult> JoinAsync(IEnumerable<PeerAddress> peers, CancellationToken cancellationToken)
    {
        var local = _client.Self.Address;
        var distinct = peers.Where(p => !p.IsEmpty && p != local).Distinct().ToArray();
        var outcomes = await Task.WhenAll(distinct.Select(p => PingInitialPeerAsync(p, remember: true, cancellationToken))).ConfigureAwait(false);
        if (_routing.Count > 0)
        {
            var self = await _lookup.FindNodeAsync(_id, cancellationToken).ConfigureAwait(false);
            var nearest = Enumerable.Range(0, NodeId.BitLength).FirstOrDefault(i => _routing.GetBucket(i).Count > 0, -1);

            // A self lookup that found fewer than k nodes asked every node it heard of, and each answered with all it
            // knows: the network is smaller than k and already fully known, so refreshing buckets would only repeat it.
            if (nearest >= 0 && _options.RefreshBucketsOnJoin && self.Closest.Count >= _options.K)
            {
                await RefreshBucketsAsync(Enumerable.Range(nearest, NodeId.BitLength - nearest).ToArray(), cancellationToken).ConfigureAwait(false);
            }
        }

        return new DhtJoinResult(outcomes);
    }

    /// <summary>
    /// Pings the initial peers missing from the routing table and the lost peers (forgetting those lost longer than
    /// <see cref="DhtNodeOptions.LostPeerRetention"/> ago), then looks up a random id in every bucket idle for at least
    /// <see cref="DhtNodeOptions.RefreshInterval"/>.
    /// </summary>
    /// <param name="cancellationToken">Cancels the refresh.</param>
    /// <returns>How many buckets were refreshed.</returns>
    public async Task<int> RefreshAsync(CancellationToken cancellationToken)
    {
        await ReconnectAsync(cancellationToken).ConfigureAwait(false);
        var buckets = _routing.GetBucketsToRefresh(_options.RefreshInterval);
        await RefreshBucketsAsync(buckets, cancellationToken).ConfigureAwait(false);
        return buckets.Count;
    }

    /// <summary>Stores every unexpired own record again at the current k closest nodes of its key (forgetting expired ones).</summary>
    /// <param name="cancellationToken">Cancels the republication.</param>
    /// <returns>How many records were republished.</returns>
    public async Task<int> RepublishAsync(CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var live = new List<DhtRecord>();
        foreach (var (slot, record) in _ownRecords)
        {
            if (record.ExpiresAt <= now)
            {
                _ownRecords.TryRemove(new KeyValuePair<(string, NodeId), DhtRecord>(slot, record));
            }
            else
            {
                live.Add(record);
            }
        }

        foreach (var record in live)
        {
            await _lookup.PublishAsync(record, cancellationToken).ConfigureAwait(false);
        }

        return live.Count;
    }

    /// <summary>
    /// Records that <paramref name="contact"/> is alive: it leaves the lost peers and updates the routing table; when
    /// its bucket is full, the least recently seen member is pinged (once at a time) before it may be evicted.
    /// </summary>
    /// <param name="contact">A peer that sent a valid request or answered one.</param>
    public void Observe(DhtContact contact)
    {
        if (!_lostPeers.IsEmpty)
        {
            _lostPeers.TryRemove(contact.Id, out _);
        }

        var update = _routing.Update(contact);
        if (update.Kind == RoutingUpdateKind.Pending && update.PingCandidate is { } candidate && !_stop.IsCancellationRequested && _evictionPings.TryAdd(candidate.Id, 0))
        {
            _pings.Track(PingBeforeEvictAsync(candidate));
        }
    }

    /// <summary>
    /// Records an authenticated requester, whose claimed listen address is not yet proven: a contact already in the
    /// table at that address is refreshed at once; a new contact, or a known id at a new address, enters only after a
    /// PING to the claimed address is answered (signed) by that id — verified in the background, at most
    /// <see cref="DhtNodeOptions.MaxPendingVerifications"/> at once, the old entry staying meanwhile. A claimed IP host
    /// that differs from the IP the stream came from is refused outright.
    /// </summary>
    /// <param name="contact">The requester's id and claimed listen address.</param>
    /// <param name="remote">The address the request's stream came from.</param>
    public void ObserveRequester(DhtContact contact, PeerAddress remote)
    {
        if (!HostMatches(contact.Address, remote))
        {
            Interlocked.Increment(ref _rejected);
            return;
        }

        if (_routing.Find(contact.Id) is { } known && known.Address == contact.Address)
        {
            Observe(contact);
            return;
        }

        if (_stop.IsCancellationRequested || _verifications.Count >= _options.MaxPendingVerifications || !_verifications.TryAdd(contact.Id, 0))
        {
            return;
        }

        _pings.Track(VerifyAsync(contact));
    }

    /// <summary>
    /// Whether a claimed listen address may belong to a requester whose stream came from <paramref name="remote"/>:
    /// when both hosts are IP addresses they must be equal (IPv4-mapped IPv6 compared as IPv4); a host name, or a
    /// transport without hosts (in-memory), is left to the verification PING.
    /// </summary>
    /// <param name="claimed">The listen address the requester claims.</param>
    /// <param name="remote">Where its stream came from.</param>
    public static bool HostMatches(PeerAddress claimed, PeerAddress remote)
    {
        if (DhtRpcHandler.TryGetHost(claimed) is not { } claimedHost || DhtRpcHandler.TryGetHost(remote) is not { } remoteHost)
        {
            return true;
        }

        if (!System.Net.IPAddress.TryParse(claimedHost, out var a) || !System.Net.IPAddress.TryParse(remoteHost, out var b))
        {
            return true;
        }

        if (a.IsIPv4MappedToIPv6)
        {
            a = a.MapToIPv4();
        }

        if (b.IsIPv4MappedToIPv6)
        {
            b = b.MapToIPv4();
        }

        return a.Equals(b);
    }

    /// <summary>Remembers a contact that failed while in the routing table, so that the refresh pings it again (oldest forgotten first beyond <see cref="DhtNodeOptions.MaxLostPeers"/>).</summary>
    /// <param name="contact">The failed contact, at the address the table held.</param>
    public void RememberLost(DhtContact contact)
    {
        if (_options.MaxLostPeers == 0 || _stop.IsCancellationRequested)
        {
            return;
        }

        _lostPeers[contact.Id] = new LostPeer(contact, _time.GetUtcNow());
        while (_lostPeers.Count > _options.MaxLostPeers)
        {
            var oldest = _lostPeers.Values.MinBy(p => p.LostAt);
            if (oldest is null)
            {
                break;
            }

            _lostPeers.TryRemove(new KeyValuePair<NodeId, LostPeer>(oldest.Contact.Id, oldest));
        }
    }

    private async Task RefreshBucketsAsync(IReadOnlyList<int> buckets, CancellationToken cancellationToken)
    {
        foreach (var index in buckets)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await _lookup.FindNodeAsync(NodeId.CreateRandomInBucket(_id, index, Random.Shared), cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task PingBeforeEvictAsync(DhtContact candidate)
    {
        try
        {
            // An answer refreshes the candidate (the newcomer stays a replacement); no answer marks it failed, which
            // promotes the most recently seen replacement.
            await _client.PingAsync(candidate, CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            _evictionPings.TryRemove(candidate.Id, out _);
        }
    }

    private async Task VerifyAsync(DhtContact contact)
    {
        try
        {
            // A signed PONG from this id at the claimed address enters it through the client's seen callback.
            var (response, _) = await _client.RequestCoreAsync(contact.Address, contact.Id, _client.NewRequest(DhtMessageType.Ping), preferClaimedAddress: false, CancellationToken.None).ConfigureAwait(false);
            Interlocked.Increment(ref response is null ? ref _rejected : ref _verified);
        }
        finally
        {
            _verifications.TryRemove(contact.Id, out _);
        }
    }

    private async Task<DhtPeerOutcome> PingInitialPeerAsync(PeerAddress address, bool remember, CancellationToken cancellationToken)
    {
        NodeId? expected = null;
        if (address.PeerId is { } text)
        {
            // A full key id (64 hex digits, as a tls:// listener names itself) names the node whose id is its first 40.
            if (!NodeId.TryParse(text.Length == AuthenticatedPeer.PeerIdLength ? text[..AuthenticatedPeer.ShortPeerIdLength] : text, out var parsed)
                || (text.Length == AuthenticatedPeer.PeerIdLength && !text.All(char.IsAsciiHexDigit)))
            {
                return new DhtPeerOutcome(address, null, $"the peer id '{text}' is not a DHT node id (40 hex digits) or a key id (64 hex digits)");
            }

            expected = parsed;
        }

        if (remember)
        {
            lock (_initialGate)
            {
                _initialPeers.TryAdd(address, expected);
            }
        }

        var (response, fault) = await _client.RequestCoreAsync(address, expected, _client.NewRequest(DhtMessageType.Ping), preferClaimedAddress: true, cancellationToken).ConfigureAwait(false);
        if (response is null)
        {
            return new DhtPeerOutcome(address, null, fault);
        }

        if (response.Type != DhtMessageType.Pong)
        {
            return new DhtPeerOutcome(address, response.Sender.Id, $"answered PING with ERROR {response.ErrorCode}: {response.ErrorMessage}");
        }

        lock (_initialGate)
        {
            if (_initialPeers.ContainsKey(address))
            {
                _initialPeers[address] = response.Sender.Id;
            }
        }

        return new DhtPeerOutcome(address, response.Sender.Id, null);
    }

    /// <summary>Pings the initial peers missing from the routing table and the lost peers (forgetting those lost too long ago).</summary>
    private async Task ReconnectAsync(CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        foreach (var (id, lost) in _lostPeers)
        {
            if (now - lost.LostAt > _options.LostPeerRetention || _routing.Find(id) is not null)
            {
                _lostPeers.TryRemove(new KeyValuePair<NodeId, LostPeer>(id, lost));
            }
        }

        PeerAddress[] initial;
        lock (_initialGate)
        {
            initial = _initialPeers.Where(p => p.Value is not { } id || _routing.Find(id) is null).Select(p => p.Key).ToArray();
        }

        var pings = initial.Select(a => (Task)PingInitialPeerAsync(a, remember: false, cancellationToken))
            .Concat(_lostPeers.Values.Select(l => (Task)_client.PingAsync(l.Contact, cancellationToken)))
            .ToArray();
        await Task.WhenAll(pings).ConfigureAwait(false);
    }

    private sealed record LostPeer(DhtContact Contact, DateTimeOffset LostAt);
}
