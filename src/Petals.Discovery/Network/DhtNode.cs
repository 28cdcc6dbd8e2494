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
    // The node is a façade over its parts: DhtRpcHandler serves requests, DhtRpcClient sends them, DhtLookup runs
    // lookups and publications, DhtMaintenance joins, refreshes, republishes and sweeps (each periodic job a PeriodicJob).
    private readonly DhtNodeOptions _options;
    private readonly TimeProvider _time;
    private readonly DhtSender _self;
    private readonly CancellationTokenSource _stop = new();
    private readonly DhtRpcClient _client;
    private readonly DhtLookup _lookup;
    private readonly DhtMaintenance _maintenance;
    private DhtRpcHandler? _handler;
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
        _self = DhtSender.For(identity, default, _options.PuzzleDifficulty);

        // The client reports peers to the maintenance, which pings through the client: the callbacks close the loop
        // (they run only once the node has started, after the constructor has set _maintenance).
        _client = new DhtRpcClient(Id, _options, _time, Routing, contact => _maintenance!.Observe(contact), contact => _maintenance!.RememberLost(contact), _stop.Token);
        _lookup = new DhtLookup(Id, _options, Routing, Storage, _client);
        _maintenance = new DhtMaintenance(Id, _options, _time, Routing, Storage, _client, _lookup, _stop.Token);
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
    public PeerAddress LocalAddress => _client.LocalAddress;

    /// <summary>The node as a contact (id and listen address).</summary>
    public DhtContact Contact => new(Id, LocalAddress);

    /// <summary>How many requests this node has received and answered (PING, STORE, FIND_NODE, FIND_VALUE; malformed ones included).</summary>
    public long RequestsServed => Volatile.Read(ref _handler)?.RequestsServed ?? 0;

    /// <summary>How many requests this node refused as RateLimited (per remote host, per sender id, or its stored-record rate).</summary>
    public long RequestsRateLimited => Volatile.Read(ref _handler)?.RequestsRateLimited ?? 0;

    /// <summary>How many requests this node refused as not authentic (old version, id not the hash of the key, identity puzzle, signature, timestamp, replayed nonce).</summary>
    public long RequestsUnauthenticated => Volatile.Read(ref _handler)?.RequestsUnauthenticated ?? 0;

    /// <summary>How many requesters entered the routing table (or moved to a new address) after a PING to their claimed address was answered by their id.</summary>
    public long ContactsVerified => _maintenance.ContactsVerified;

    /// <summary>How many requesters were kept out of the routing table: their claimed host was not the one they connected from, or the PING to their claimed address was not answered by their id.</summary>
    public long ContactsRejected => _maintenance.ContactsRejected;

    /// <summary>How many address verifications (PINGs to a requester's claimed address) are in flight.</summary>
    internal int PendingVerifications => _maintenance.PendingVerifications;

    /// <summary>How many incoming connections were aborted at once because their address held <see cref="DhtNodeOptions.MaxRequestsPerAddress"/> already.</summary>
    public long RequestsRefused => Volatile.Read(ref _handler)?.RequestsRefused ?? 0;

    /// <summary>Whether the node is serving requests.</summary>
    public bool IsRunning => Volatile.Read(ref _state) == 1;

    /// <summary>Whether the node runs in client mode (started without a listen address): it looks up, gets and stores but serves nobody.</summary>
    public bool IsClientMode { get; private set; }

    /// <summary>
    /// The contacts that failed recently while in the routing table (the "lost peers", most recent last): the refresh
    /// pings them (and the initial peers missing from the table) so that a network split by a partition merges again.
    /// </summary>
    public IReadOnlyList<DhtContact> LostPeers => _maintenance.LostPeers;

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
        _client.Attach(transport, _self, Identity);
        _maintenance.StartJobs();
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

        ITransportListener listener;
        try
        {
            listener = await transport.ListenAsync(bindAddress, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Volatile.Write(ref _state, 0);
            throw;
        }

        var self = _self with { Address = listener.LocalAddress };
        _client.Attach(transport, self, Identity);
        var handler = new DhtRpcHandler(listener, self, Identity, _options, _time, Routing, Storage, _maintenance.ObserveRequester);
        Volatile.Write(ref _handler, handler);
        handler.Start(_stop.Token);
        _maintenance.StartJobs();
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
        // Async, so that misuse faults the returned task rather than the call, as it always has.
        ArgumentNullException.ThrowIfNull(peers);
        EnsureRunning();
        return await _maintenance.JoinAsync(peers, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Looks up the k nodes closest to <paramref name="target"/> with alpha parallel iterative queries.</summary>
    /// <param name="target">The id to look up.</param>
    /// <param name="cancellationToken">Cancels the lookup.</param>
    /// <returns>The closest nodes that answered, with hop and message counts.</returns>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public async Task<DhtLookupResult> FindNodeAsync(NodeId target, CancellationToken cancellationToken = default)
    {
        EnsureRunning();
        return await _lookup.FindNodeAsync(target, cancellationToken).ConfigureAwait(false);
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
        return await _lookup.GetAsync(key, cancellationToken).ConfigureAwait(false);
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

        _maintenance.Remember(record);
        return await _lookup.PublishAsync(record, cancellationToken).ConfigureAwait(false);
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
        return await _maintenance.RefreshAsync(cancellationToken).ConfigureAwait(false);
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
        return await _maintenance.RepublishAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Stops serving: closes the listener, stops the timers and waits for in-flight work. Idempotent.</summary>
    /// <returns>A task that completes when the node has stopped.</returns>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _state, 2) == 2)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        if (Volatile.Read(ref _handler) is { } handler)
        {
            await handler.DisposeAsync().ConfigureAwait(false);
        }

        // After the handler, so that the requests it served while stopping have ended and any eviction ping one of them
        // started is among those waited for.
        await _maintenance.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Stops the node (see <see cref="StopAsync"/>).</summary>
    /// <returns>A task that completes when the node has stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"DHT node {Id} at {LocalAddress}";

    private static void CheckKey(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        var bytes = System.Text.Encoding.UTF8.GetByteCount(key);
        if (bytes > RecordLimits.Default.MaxKeyBytes)
        {
            throw new ArgumentException($"The key is {bytes} UTF-8 bytes; at most {RecordLimits.Default.MaxKeyBytes}.", nameof(key));
        }
    }

    private void EnsureRunning()
    {
        if (!IsRunning)
        {
            throw new InvalidOperationException($"DHT node {Id} is not running (start it first; a stopped node cannot be restarted).");
        }
    }
}
