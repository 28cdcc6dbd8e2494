using System.Collections.Concurrent;
using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// A Kademlia DHT node over an <see cref="ITransport"/>: serves PING / STORE / FIND_NODE / FIND_VALUE
/// (docs/dht-protocol.md), keeps its <see cref="RoutingTable"/> current from every valid sender (pinging the least
/// recently seen member of a full bucket before evicting it), runs iterative parallel lookups, stores records at the
/// k closest nodes, refreshes idle buckets and republishes the records given to <see cref="StoreAsync"/>.
/// Thread-safe. All time (request timeouts, refresh and republication timers) comes from the injected
/// <see cref="TimeProvider"/>.
/// </summary>
public sealed class DhtNode : IAsyncDisposable
{
    private readonly TimeProvider _time;
    private readonly DhtNodeOptions _options;
    private readonly DhtSender _self;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<(string Key, NodeId SubKey), DhtRecord> _ownRecords = new();
    private readonly ConcurrentDictionary<NodeId, byte> _evictionPings = new();
    private readonly HashSet<Task> _background = [];
    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _serving;
    private readonly ConcurrentDictionary<NodeId, LostPeer> _lostPeers = new();
    private readonly Lock _initialGate = new();
    private readonly Dictionary<PeerAddress, NodeId?> _initialPeers = [];
    private DhtSender? _listening;
    private ITransport? _transport;
    private ITransportListener? _listener;
    private Task? _acceptLoop;
    private ITimer? _refreshTimer;
    private ITimer? _republishTimer;
    private ITimer? _sweepTimer;
    private long _nextRequestId;
    private long _requestsServed;
    private int _refreshing;
    private int _republishing;
    private int _state; // 0 created, 1 started, 2 stopped

    /// <summary>Creates a node; call <c>StartAsync</c> to serve and <see cref="BootstrapAsync"/> to join a network.</summary>
    /// <param name="identity">The node's key pair; its <see cref="PeerIdentity.NodeId"/> is the node's id. Not disposed by the node.</param>
    /// <param name="options">The settings; <see cref="DhtNodeOptions.Default"/> if null.</param>
    /// <param name="timeProvider">The clock for timeouts, timers and record expiry; the system clock if null.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public DhtNode(PeerIdentity identity, DhtNodeOptions? options = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(identity);
        _options = options ?? DhtNodeOptions.Default;
        _options.Validate();
        _time = timeProvider ?? TimeProvider.System;
        Identity = identity;
        Routing = new RoutingTable(identity.NodeId, _options.K, _options.K, _time);
        Storage = new RecordStorage(_options.Storage, new RecordValidator(null, _time), _time);
        _self = new DhtSender(identity.NodeId, identity.PublicKey, default);
        _nextRequestId = Random.Shared.NextInt64();
        _serving = new SemaphoreSlim(_options.MaxConcurrentRequests, _options.MaxConcurrentRequests);
    }

    /// <summary>The node's identity.</summary>
    public PeerIdentity Identity { get; }

    /// <summary>The node's id.</summary>
    public NodeId Id => Identity.NodeId;

    /// <summary>The node's settings.</summary>
    public DhtNodeOptions Options => _options;

    /// <summary>The node's routing table.</summary>
    public RoutingTable Routing { get; }

    /// <summary>The records this node holds for the network.</summary>
    public RecordStorage Storage { get; }

    /// <summary>Where the node listens (empty before <c>StartAsync</c> and in client mode).</summary>
    public PeerAddress LocalAddress => _listening?.Address ?? default;

    /// <summary>The node as a contact (id and listen address).</summary>
    public DhtContact Contact => new(Id, LocalAddress);

    /// <summary>How many requests this node has received and answered (PING, STORE, FIND_NODE, FIND_VALUE; malformed ones included).</summary>
    public long RequestsServed => Interlocked.Read(ref _requestsServed);

    /// <summary>Whether the node is serving requests.</summary>
    public bool IsRunning => Volatile.Read(ref _state) == 1;

    /// <summary>Whether the node runs in client mode (started without a listen address): it looks up, gets and stores but serves nobody.</summary>
    public bool IsClientMode { get; private set; }

    /// <summary>
    /// The contacts that failed recently while in the routing table (the "lost peers", most recent last): the refresh
    /// pings them (and the initial peers missing from the table) so that a network split by a partition merges again.
    /// </summary>
    public IReadOnlyList<DhtContact> LostPeers => _lostPeers.Values.OrderBy(p => p.LostAt).Select(p => p.Contact).ToArray();

    /// <summary>
    /// Starts the node in <b>client mode</b> (as hivemind's <c>client_mode</c>): it does not listen, its requests carry an
    /// empty address so that receivers never add it to their routing tables, and it never keeps a replica of a record it
    /// stores. <see cref="BootstrapAsync"/>, <see cref="FindNodeAsync"/>, <see cref="GetAsync"/>, <see cref="StoreAsync"/>
    /// and the refresh and republication timers work as on a listening node. Suits a client behind NAT or one that
    /// only reads.
    /// </summary>
    /// <param name="transport">The transport to connect with.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <exception cref="InvalidOperationException">The node was already started or stopped.</exception>
    public Task StartAsync(ITransport transport, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        cancellationToken.ThrowIfCancellationRequested();
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            throw new InvalidOperationException($"DHT node {Id} was already started or stopped; a node starts once.");
        }

        IsClientMode = true;
        _transport = transport;
        _listening = _self;
        StartTimers();
        return Task.CompletedTask;
    }

    /// <summary>Starts listening at <paramref name="bindAddress"/> and serving requests; starts the refresh, republication and sweep timers.</summary>
    /// <param name="transport">The transport to listen and connect with.</param>
    /// <param name="bindAddress">Where to listen; the listener's actual address becomes <see cref="LocalAddress"/>.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <exception cref="InvalidOperationException">The node was already started or stopped.</exception>
    public async Task StartAsync(ITransport transport, PeerAddress bindAddress, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transport);
        if (bindAddress.IsEmpty)
        {
            throw new ArgumentException("The bind address is empty.", nameof(bindAddress));
        }

        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            throw new InvalidOperationException($"DHT node {Id} was already started or stopped; a node starts once.");
        }

        try
        {
            _listener = await transport.ListenAsync(bindAddress, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Volatile.Write(ref _state, 0);
            throw;
        }

        _transport = transport;
        _listening = _self with { Address = _listener.LocalAddress };
        _acceptLoop = AcceptLoopAsync(_listener, _stop.Token);
        StartTimers();
    }

    /// <summary>
    /// Joins the network through <paramref name="peers"/>: pings each (learning and verifying its id), looks up the
    /// node's own id, then refreshes every bucket from the nearest non-empty one up. An address that names a peer id
    /// (<c>tcp://&lt;40 hex digits&gt;@host:port</c>) is accepted only if the node answering there has that id.
    /// The peers are remembered as initial peers, which the refresh pings again whenever they are missing from the
    /// routing table. <see cref="JoinAsync"/> does the same and tells what each peer answered.
    /// </summary>
    /// <param name="peers">Addresses of nodes already in the network.</param>
    /// <param name="cancellationToken">Cancels the bootstrap.</param>
    /// <returns>How many of <paramref name="peers"/> answered with the expected identity (0: the node reached nobody and is alone).</returns>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public async Task<int> BootstrapAsync(IEnumerable<PeerAddress> peers, CancellationToken cancellationToken = default) =>
        (await JoinAsync(peers, cancellationToken).ConfigureAwait(false)).Answered;

    /// <summary>
    /// <see cref="BootstrapAsync"/> with a report: pings every peer (refusing one whose address names a peer id other
    /// than the id it answers with, or a peer id that is not a node id), then, if any answered, looks up the node's own
    /// id and refreshes every bucket from the nearest non-empty one up (<see cref="DhtNodeOptions.RefreshBucketsOnJoin"/>).
    /// </summary>
    /// <param name="peers">Addresses of nodes already in the network, optionally with the peer id they must prove.</param>
    /// <param name="cancellationToken">Cancels the bootstrap.</param>
    /// <returns>Each peer's outcome, with the reason for each one refused or unreachable.</returns>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public async Task<DhtJoinResult> JoinAsync(IEnumerable<PeerAddress> peers, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(peers);
        EnsureRunning();
        var distinct = peers.Where(p => !p.IsEmpty && p != LocalAddress).Distinct().ToArray();
        var outcomes = await Task.WhenAll(distinct.Select(p => PingInitialPeerAsync(p, remember: true, cancellationToken))).ConfigureAwait(false);
        if (Routing.Count > 0)
        {
            var self = await FindNodeAsync(Id, cancellationToken).ConfigureAwait(false);
            var nearest = Enumerable.Range(0, NodeId.BitLength).FirstOrDefault(i => Routing.GetBucket(i).Count > 0, -1);

            // A self lookup that found fewer than k nodes asked every node it heard of, and each answered with all it
            // knows: the network is smaller than k and already fully known, so refreshing buckets would only repeat it.
            if (nearest >= 0 && _options.RefreshBucketsOnJoin && self.Closest.Count >= _options.K)
            {
                await RefreshBucketsAsync(Enumerable.Range(nearest, NodeId.BitLength - nearest).ToArray(), cancellationToken).ConfigureAwait(false);
            }
        }

        return new DhtJoinResult(outcomes);
    }

    /// <summary>Looks up the k nodes closest to <paramref name="target"/> with alpha parallel iterative queries.</summary>
    /// <param name="target">The id to look up.</param>
    /// <param name="cancellationToken">Cancels the lookup.</param>
    /// <returns>The closest nodes that answered, with hop and message counts.</returns>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public async Task<DhtLookupResult> FindNodeAsync(NodeId target, CancellationToken cancellationToken = default)
    {
        EnsureRunning();
        var (lookup, _) = await LookupAsync(target, null, cancellationToken).ConfigureAwait(false);
        return lookup;
    }

    /// <summary>
    /// Finds the records of <paramref name="key"/>: an iterative FIND_VALUE lookup over the k nodes closest to the key,
    /// merging the valid sub-records every node returns (records that fail validation or name another key are dropped).
    /// </summary>
    /// <param name="key">The key, 1 to <see cref="RecordLimits.MaxKeyBytes"/> UTF-8 bytes.</param>
    /// <param name="cancellationToken">Cancels the lookup.</param>
    /// <returns>The records found and the lookup's measurements.</returns>
    /// <exception cref="ArgumentException">The key is empty or too long.</exception>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public async Task<DhtValueResult> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        CheckKey(key);
        EnsureRunning();
        var (lookup, found) = await LookupAsync(NodeId.FromKey(key), key, cancellationToken).ConfigureAwait(false);
        foreach (var record in Storage.Get(key))
        {
            Merge(found!, record);
        }

        var records = found!.Values.OrderBy(r => r.SubKey).ToArray();
        return new DhtValueResult(key, records, lookup);
    }

    /// <summary>
    /// Stores <paramref name="record"/> at the k nodes closest to its key (this node included when it is one of them)
    /// and remembers it for republication every <see cref="DhtNodeOptions.RepublishInterval"/> until it expires.
    /// </summary>
    /// <param name="record">A signed, valid record.</param>
    /// <param name="cancellationToken">Cancels the store.</param>
    /// <returns>Every node's verdict.</returns>
    /// <exception cref="ArgumentException">The record fails validation; the message gives the reason.</exception>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public async Task<DhtStoreResult> StoreAsync(DhtRecord record, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        EnsureRunning();
        var verdict = Storage.Validator.Validate(record);
        if (!verdict.IsAccepted)
        {
            throw new ArgumentException($"Record {record} cannot be stored: {verdict}", nameof(record));
        }

        _ownRecords.AddOrUpdate((record.Key, record.SubKey), record, (_, old) => old.ExpirationUnixMilliseconds > record.ExpirationUnixMilliseconds ? old : record);
        return await PublishAsync(record, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// What the refresh timer runs: first pings the initial peers missing from the routing table and the
    /// <see cref="LostPeers"/> (those that answer re-enter the table; a lost peer silent for longer than
    /// <see cref="DhtNodeOptions.LostPeerRetention"/> is forgotten), then looks up a random id in every bucket idle
    /// for at least <see cref="DhtNodeOptions.RefreshInterval"/>.
    /// </summary>
    /// <param name="cancellationToken">Cancels the refresh.</param>
    /// <returns>How many buckets were refreshed.</returns>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public async Task<int> RefreshAsync(CancellationToken cancellationToken = default)
    {
        EnsureRunning();
        await ReconnectAsync(cancellationToken).ConfigureAwait(false);
        var buckets = Routing.GetBucketsToRefresh(_options.RefreshInterval);
        await RefreshBucketsAsync(buckets, cancellationToken).ConfigureAwait(false);
        return buckets.Count;
    }

    /// <summary>
    /// Stores every unexpired record given to <see cref="StoreAsync"/> again at the current k closest nodes of its key
    /// (what the republication timer runs), so that nodes that joined since hold it and departed ones are replaced.
    /// </summary>
    /// <param name="cancellationToken">Cancels the republication.</param>
    /// <returns>How many records were republished.</returns>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public async Task<int> RepublishAsync(CancellationToken cancellationToken = default)
    {
        EnsureRunning();
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
            await PublishAsync(record, cancellationToken).ConfigureAwait(false);
        }

        return live.Count;
    }

    /// <summary>Stops serving: closes the listener, stops the timers and waits for in-flight work. Idempotent.</summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _state, 2) == 2)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _refreshTimer?.Dispose();
        _republishTimer?.Dispose();
        _sweepTimer?.Dispose();
        if (_listener is not null)
        {
            await _listener.DisposeAsync().ConfigureAwait(false);
        }

        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }

        while (true)
        {
            Task[] pending;
            lock (_gate)
            {
                pending = [.. _background];
            }

            if (pending.Length == 0)
            {
                break;
            }

            await Task.WhenAll(pending).ConfigureAwait(false);
        }
    }

    /// <summary>Stops the node (see <see cref="StopAsync"/>).</summary>
    /// <returns>A task that completes when the node has stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stop.Dispose();
        _serving.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"DHT node {Id} at {LocalAddress}";

    private void StartTimers()
    {
        _refreshTimer = _time.CreateTimer(_ => Track(RunRefreshAsync()), null, _options.RefreshInterval, _options.RefreshInterval);
        _republishTimer = _time.CreateTimer(_ => Track(RunRepublishAsync()), null, _options.RepublishInterval, _options.RepublishInterval);
        _sweepTimer = Storage.StartPeriodicSweep(_options.RepublishInterval);
    }

    private DhtSender Self => _listening ?? throw new InvalidOperationException($"DHT node {Id} is not started.");

    private static void CheckKey(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        var bytes = System.Text.Encoding.UTF8.GetByteCount(key);
        if (bytes > RecordLimits.Default.MaxKeyBytes)
        {
            throw new ArgumentException($"The key is {bytes} UTF-8 bytes; at most {RecordLimits.Default.MaxKeyBytes}.", nameof(key));
        }
    }

    private static void Merge(Dictionary<NodeId, DhtRecord> found, DhtRecord record)
    {
        if (!found.TryGetValue(record.SubKey, out var existing) || existing.ExpirationUnixMilliseconds < record.ExpirationUnixMilliseconds)
        {
            found[record.SubKey] = record;
        }
    }

    private void EnsureRunning()
    {
        if (!IsRunning)
        {
            throw new InvalidOperationException($"DHT node {Id} is not running (start it first; a stopped node cannot be restarted).");
        }
    }

    private ulong NextRequestId() => unchecked((ulong)Interlocked.Increment(ref _nextRequestId));

    private void Track(Task task)
    {
        lock (_gate)
        {
            _background.Add(task);
        }

        task.ContinueWith(
            t =>
            {
                lock (_gate)
                {
                    _background.Remove(t);
                }
            },
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    private async Task RunRefreshAsync()
    {
        if (Interlocked.Exchange(ref _refreshing, 1) == 1)
        {
            return;
        }

        try
        {
            if (IsRunning)
            {
                await RefreshAsync(_stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (InvalidOperationException) when (!IsRunning)
        {
        }
        finally
        {
            Volatile.Write(ref _refreshing, 0);
        }
    }

    private async Task RunRepublishAsync()
    {
        if (Interlocked.Exchange(ref _republishing, 1) == 1)
        {
            return;
        }

        try
        {
            if (IsRunning)
            {
                await RepublishAsync(_stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (InvalidOperationException) when (!IsRunning)
        {
        }
        finally
        {
            Volatile.Write(ref _republishing, 0);
        }
    }

    private async Task RefreshBucketsAsync(IReadOnlyList<int> buckets, CancellationToken cancellationToken)
    {
        foreach (var index in buckets)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await LookupAsync(NodeId.CreateRandomInBucket(Id, index, Random.Shared), null, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<DhtStoreResult> PublishAsync(DhtRecord record, CancellationToken cancellationToken)
    {
        var keyId = record.KeyId;
        var (lookup, _) = await LookupAsync(keyId, null, cancellationToken).ConfigureAwait(false);
        var replies = new List<DhtStoreReply>();
        var closest = lookup.Closest;
        if (!IsClientMode && (closest.Count < _options.K || keyId.CompareDistance(Id, closest[^1].Id) < 0))
        {
            // This node is one of the k closest: it keeps a replica and the farthest remote one drops out.
            replies.Add(new DhtStoreReply(Contact, Storage.Store(record)));
            closest = closest.Take(_options.K - 1).ToArray();
        }

        var sends = closest.Select(async contact =>
        {
            var response = await RequestAsync(contact.Address, contact.Id, new DhtMessage(DhtMessageType.Store, NextRequestId(), Self) { Records = [record] }, cancellationToken).ConfigureAwait(false);
            RecordValidationResult? result = response is { Type: DhtMessageType.StoreResult, StoreResults.Count: 1 } ? response.StoreResults[0] : null;
            return new DhtStoreReply(contact, result);
        }).ToArray();
        replies.AddRange(await Task.WhenAll(sends).ConfigureAwait(false));
        return new DhtStoreResult(record, replies, lookup);
    }

    private sealed class Candidate(DhtContact contact, int depth)
    {
        public DhtContact Contact { get; } = contact;

        public int Depth { get; } = depth;

        public int State { get; set; } // 0 not queried, 1 in flight, 2 answered, 3 failed
    }

    private async Task<(DhtLookupResult Lookup, Dictionary<NodeId, DhtRecord>? Records)> LookupAsync(NodeId target, string? key, CancellationToken cancellationToken)
    {
        var k = _options.K;
        var records = key is null ? null : new Dictionary<NodeId, DhtRecord>();
        var comparer = new NodeIdDistanceComparer(target);
        var ordered = new List<Candidate>();
        var seen = new HashSet<NodeId> { Id };
        void Add(DhtContact contact, int depth)
        {
            if (!seen.Add(contact.Id))
            {
                return;
            }

            var candidate = new Candidate(contact, depth);
            var index = ordered.BinarySearch(candidate, Comparer<Candidate>.Create((a, b) => comparer.Compare(a.Contact.Id, b.Contact.Id)));
            ordered.Insert(index < 0 ? ~index : index, candidate);
        }

        foreach (var contact in Routing.FindClosest(target, k, Id))
        {
            Add(contact, 1);
        }

        var messages = 0;
        var inFlight = new List<(Task<DhtMessage?> Task, Candidate Candidate)>();

        // Kademlia's final round: while answers bring closer nodes, alpha requests are in flight; once an answer brings
        // nothing closer than the closest node already seen, every remaining candidate among the k closest is asked at
        // once instead of alpha at a time (the lookup must hear from all k anyway), which saves the sequential rounds.
        var stalled = false;
        while (true)
        {
            var eligible = 0;
            var limit = stalled ? k : _options.Alpha;
            foreach (var candidate in ordered)
            {
                if (candidate.State == 3)
                {
                    continue;
                }

                if (++eligible > k || inFlight.Count >= limit)
                {
                    break;
                }

                if (candidate.State == 0)
                {
                    candidate.State = 1;
                    messages++;
                    var request = key is null
                        ? new DhtMessage(DhtMessageType.FindNode, NextRequestId(), Self) { Target = target }
                        : new DhtMessage(DhtMessageType.FindValue, NextRequestId(), Self) { Key = key };
                    inFlight.Add((RequestAsync(candidate.Contact.Address, candidate.Contact.Id, request, cancellationToken), candidate));
                }
            }

            if (inFlight.Count == 0)
            {
                break;
            }

            // Completed requests may share a cached task instance, so they are found by position, not by task.
            var done = await Task.WhenAny(inFlight.Select(f => f.Task)).ConfigureAwait(false);
            var position = inFlight.FindIndex(f => f.Task == done);
            var answered = inFlight[position].Candidate;
            inFlight.RemoveAt(position);
            var response = await done.ConfigureAwait(false);
            var expected = key is null ? DhtMessageType.Nodes : DhtMessageType.Value;
            if (response is null || response.Type != expected)
            {
                answered.State = 3;
                continue;
            }

            answered.State = 2;
            var closestBefore = ordered.Find(c => c.State != 3)?.Contact.Id;
            foreach (var contact in response.Contacts)
            {
                Add(contact, answered.Depth + 1);
            }

            var closestAfter = ordered.Find(c => c.State != 3)?.Contact.Id;
            stalled = closestBefore is { } before && closestAfter is { } after && comparer.Compare(after, before) >= 0;

            if (records is not null)
            {
                foreach (var record in response.Records)
                {
                    if (record.Key == key && Storage.Validator.Validate(record).IsAccepted)
                    {
                        Merge(records, record);
                    }
                }
            }
        }

        Routing.MarkRefreshed(target);
        var closest = ordered.Where(c => c.State == 2).Take(k).ToArray();
        var hops = closest.Length == 0 ? 0 : closest.Max(c => c.Depth);
        return (new DhtLookupResult(target, closest.Select(c => c.Contact).ToArray(), hops, messages), records);
    }

    /// <summary>
    /// Sends one request on a fresh stream and reads its response. Null when the peer failed (refused, timed out,
    /// malformed or inconsistent answer), after marking it failed; otherwise the sender is recorded as seen.
    /// </summary>
    private async Task<DhtMessage?> RequestAsync(PeerAddress address, NodeId? expectedId, DhtMessage request, CancellationToken cancellationToken) =>
        (await RequestCoreAsync(address, expectedId, request, preferClaimedAddress: false, cancellationToken).ConfigureAwait(false)).Response;

    /// <summary>
    /// <see cref="RequestAsync"/> that also tells why a peer failed. The responder enters the routing table at the
    /// address it was reached at, or (<paramref name="preferClaimedAddress"/>, for initial peers known by an address
    /// only) at the listen address it claims. A peer that fails while in a bucket is marked failed and kept in the
    /// lost peers.
    /// </summary>
    private async Task<(DhtMessage? Response, string? Fault)> RequestCoreAsync(PeerAddress address, NodeId? expectedId, DhtMessage request, bool preferClaimedAddress, CancellationToken cancellationToken)
    {
        var transport = _transport ?? throw new InvalidOperationException($"DHT node {Id} is not started.");
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token, timeout.Token);
        DhtMessage? response = null;
        string? fault = null;
        try
        {
            var stream = await transport.ConnectAsync(address, linked.Token).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                await stream.WriteAsync(DhtMessageCodec.EncodeFrame(request), linked.Token).ConfigureAwait(false);
                await stream.CompleteWritesAsync(linked.Token).ConfigureAwait(false);
                response = await DhtMessageCodec.ReadFrameAsync(stream, linked.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && !_stop.IsCancellationRequested)
        {
            fault = $"timed out after {_options.RequestTimeout.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)} s";
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return (null, "the local node stopped");
        }
        catch (Exception e) when (e is TransportException or DhtFormatException or IOException or ObjectDisposedException)
        {
            fault = e.Message;
        }

        if (fault is null)
        {
            if (response is null)
            {
                fault = "closed the stream without answering";
            }
            else if (response.RequestId != request.RequestId)
            {
                fault = $"answered request {response.RequestId} instead of {request.RequestId}";
            }
            else if (response.Type != request.Type + 1 && response.Type != DhtMessageType.Error)
            {
                fault = $"answered {request.Type} with {response.Type}";
            }
            else if (!response.Sender.IsIdentityConsistent)
            {
                fault = $"answered with the id {response.Sender.Id}, which is not the hash of its public key";
            }
            else if (expectedId is { } id && response.Sender.Id != id)
            {
                fault = $"answered as node {response.Sender.Id}, not the expected {id}";
            }
        }

        if (fault is not null)
        {
            if (expectedId is { } failed)
            {
                // Only a failure at the address the table holds counts against the node: a stale address from another
                // node's answer, or another node answering at an address said to be this id's, must not evict it.
                var known = Routing.Find(failed);
                if (known is null)
                {
                    Routing.MarkFailed(failed);
                }
                else if (known.Address == address && Routing.MarkFailed(failed))
                {
                    RememberLost(known);
                }
            }

            return (null, fault);
        }

        var claimed = response!.Sender.Address;
        Observe(new DhtContact(response.Sender.Id, preferClaimedAddress && !claimed.IsEmpty ? claimed : address));
        return (response, null);
    }

    private void RememberLost(DhtContact contact)
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

    private async Task<DhtPeerOutcome> PingInitialPeerAsync(PeerAddress address, bool remember, CancellationToken cancellationToken)
    {
        NodeId? expected = null;
        if (address.PeerId is { } text)
        {
            if (!NodeId.TryParse(text, out var parsed))
            {
                return new DhtPeerOutcome(address, null, $"the peer id '{text}' is not a DHT node id (40 hex digits)");
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

        var (response, fault) = await RequestCoreAsync(address, expected, new DhtMessage(DhtMessageType.Ping, NextRequestId(), Self), preferClaimedAddress: true, cancellationToken).ConfigureAwait(false);
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
            if (now - lost.LostAt > _options.LostPeerRetention || Routing.Find(id) is not null)
            {
                _lostPeers.TryRemove(new KeyValuePair<NodeId, LostPeer>(id, lost));
            }
        }

        PeerAddress[] initial;
        lock (_initialGate)
        {
            initial = _initialPeers.Where(p => p.Value is not { } id || Routing.Find(id) is null).Select(p => p.Key).ToArray();
        }

        var pings = initial.Select(a => (Task)PingInitialPeerAsync(a, remember: false, cancellationToken))
            .Concat(_lostPeers.Values.Select(l => (Task)RequestAsync(l.Contact.Address, l.Contact.Id, new DhtMessage(DhtMessageType.Ping, NextRequestId(), Self), cancellationToken)))
            .ToArray();
        await Task.WhenAll(pings).ConfigureAwait(false);
    }

    private void Observe(DhtContact contact)
    {
        if (!_lostPeers.IsEmpty)
        {
            _lostPeers.TryRemove(contact.Id, out _);
        }

        var update = Routing.Update(contact);
        if (update.Kind == RoutingUpdateKind.Pending && update.PingCandidate is { } candidate && IsRunning && _evictionPings.TryAdd(candidate.Id, 0))
        {
            Track(PingBeforeEvictAsync(candidate));
        }
    }

    private async Task PingBeforeEvictAsync(DhtContact candidate)
    {
        try
        {
            // An answer refreshes the candidate (the newcomer stays a replacement); no answer marks it failed, which
            // promotes the most recently seen replacement.
            await RequestAsync(candidate.Address, candidate.Id, new DhtMessage(DhtMessageType.Ping, NextRequestId(), Self), CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            _evictionPings.TryRemove(candidate.Id, out _);
        }
    }

    private async Task AcceptLoopAsync(ITransportListener listener, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            ITransportStream stream;
            try
            {
                await _serving.WaitAsync(stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            try
            {
                stream = await listener.AcceptAsync(stop).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or TransportException)
            {
                _serving.Release();
                return;
            }

            Track(ServeAndReleaseAsync(stream, stop));
        }
    }

    private async Task ServeAndReleaseAsync(ITransportStream stream, CancellationToken stop)
    {
        try
        {
            await ServeAsync(stream, stop).ConfigureAwait(false);
        }
        finally
        {
            _serving.Release();
        }
    }

    private async Task ServeAsync(ITransportStream stream, CancellationToken stop)
    {
        await using (stream.ConfigureAwait(false))
        {
            using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, timeout.Token);
            try
            {
                DhtMessage response;
                DhtMessage? request;
                try
                {
                    request = await DhtMessageCodec.ReadFrameAsync(stream, linked.Token).ConfigureAwait(false);
                    if (request is null)
                    {
                        return;
                    }

                    Interlocked.Increment(ref _requestsServed);
                    try
                    {
                        response = Handle(request);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        // A bug or an unexpected fault in a handler: answer Internal instead of leaving the peer waiting.
                        response = Error(request.RequestId, DhtErrorCode.Internal, $"{e.GetType().Name}: {e.Message}");
                    }
                }
                catch (DhtFormatException e)
                {
                    Interlocked.Increment(ref _requestsServed);
                    response = Error(0, DhtErrorCode.Malformed, e.Message);
                }

                await stream.WriteAsync(DhtMessageCodec.EncodeFrame(response), linked.Token).ConfigureAwait(false);
                await stream.CompleteWritesAsync(linked.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or TransportException or IOException or ObjectDisposedException)
            {
                // The requester went away, the request timed out or the node is stopping: nothing to answer.
            }
        }
    }

    private DhtMessage Error(ulong requestId, DhtErrorCode code, string message) =>
        new(DhtMessageType.Error, requestId, Self) { ErrorCode = code, ErrorMessage = message };

    /// <summary>Answers one decoded request (internal for tests).</summary>
    internal DhtMessage Handle(DhtMessage request)
    {
        if (!request.IsRequest)
        {
            return Error(request.RequestId, DhtErrorCode.UnexpectedType, $"{request.Type} is not a request.");
        }

        if (!request.Sender.IsIdentityConsistent)
        {
            return Error(request.RequestId, DhtErrorCode.IdentityMismatch, $"The sender id {request.Sender.Id} is not the hash of the sender's public key.");
        }

        // A client-mode sender (no listen address) is answered but never remembered, so it is never handed out in NODES.
        if (!request.Sender.Address.IsEmpty)
        {
            Observe(request.Sender.ToContact());
        }

        switch (request.Type)
        {
            case DhtMessageType.Ping:
                return new DhtMessage(DhtMessageType.Pong, request.RequestId, Self);
            case DhtMessageType.Store:
                var results = new RecordValidationResult[request.Records.Count];
                for (var i = 0; i < results.Length; i++)
                {
                    results[i] = Storage.Store(request.Records[i]);
                }

                return new DhtMessage(DhtMessageType.StoreResult, request.RequestId, Self) { StoreResults = results };
            case DhtMessageType.FindNode:
                return new DhtMessage(DhtMessageType.Nodes, request.RequestId, Self) { Contacts = Routing.FindClosest(request.Target, _options.K, request.Sender.Id) };
            default:
                var records = new List<DhtRecord>();
                long budget = DhtMessageCodec.MaxFrameBytes - 64 * 1024;
                foreach (var record in Storage.Get(request.Key))
                {
                    budget -= DhtRecordCodec.GetEncodedLength(record);
                    if (budget < 0 || records.Count == DhtMessageCodec.MaxRecords)
                    {
                        break;
                    }

                    records.Add(record);
                }

                return new DhtMessage(DhtMessageType.Value, request.RequestId, Self)
                {
                    Records = records,
                    Contacts = Routing.FindClosest(NodeId.FromKey(request.Key), _options.K, request.Sender.Id),
                };
        }
    }

    private sealed record LostPeer(DhtContact Contact, DateTimeOffset LostAt);
}
