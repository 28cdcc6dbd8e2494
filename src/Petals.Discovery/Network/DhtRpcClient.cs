using System.Globalization;
using System.Security.Cryptography;
using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// The node's outgoing side: sends one request per fresh stream, bounded by <see cref="DhtNodeOptions.RequestTimeout"/>
/// on the injected clock, and checks the answer (request id, type, identity, expected id). A peer that answered is
/// reported as seen; a peer that failed at the address its routing-table entry holds is marked failed and reported
/// as lost. Thread-safe once <see cref="Attach"/> has run.
/// </summary>
internal sealed class DhtRpcClient
{
    private readonly NodeId _id;
    private readonly DhtNodeOptions _options;
    private readonly TimeProvider _time;
    private readonly RoutingTable _routing;
    private readonly CancellationToken _stop;
    private readonly Action<DhtContact> _seen;
    private readonly Action<DhtContact> _lost;
    private ITransport? _transport;
    private PeerIdentity? _identity;
    private DhtSender? _self;
    private long _nextRequestId;

    /// <summary>Creates the client; <see cref="Attach"/> gives it a transport and the sender it writes into requests.</summary>
    /// <param name="id">The local node's id (for messages).</param>
    /// <param name="options">The node's settings.</param>
    /// <param name="timeProvider">The clock for request timeouts.</param>
    /// <param name="routing">The routing table failures are marked in.</param>
    /// <param name="seen">Called with every peer that answered acceptably (at the address it enters the table with).</param>
    /// <param name="lost">Called with the routing-table entry of a peer that failed at the address the table holds.</param>
    /// <param name="stop">Cancelled when the node stops: in-flight requests end without blaming the peer.</param>
    public DhtRpcClient(NodeId id, DhtNodeOptions options, TimeProvider timeProvider, RoutingTable routing, Action<DhtContact> seen, Action<DhtContact> lost, CancellationToken stop)
    {
        _id = id;
        _options = options;
        _time = timeProvider;
        _routing = routing;
        _stop = stop;
        _seen = seen;
        _lost = lost;
        _nextRequestId = Random.Shared.NextInt64();
    }

    /// <summary>The sender written into every request (its address is empty in client mode).</summary>
    /// <exception cref="InvalidOperationException">The node is not started.</exception>
    public DhtSender Self => _self ?? throw new InvalidOperationException($"DHT node {_id} is not started.");

    /// <summary>Where the node listens: empty before <see cref="Attach"/> and in client mode.</summary>
    public PeerAddress LocalAddress => Volatile.Read(ref _self)?.Address ?? default;

    /// <summary>Gives the client the transport to connect with and the sender to write into requests (once, on start).</summary>
    /// <param name="transport">The transport.</param>
    /// <param name="self">The local node as a sender: id, public key, listen address (empty in client mode) and puzzle nonce.</param>
    /// <param name="identity">The local node's key, which signs every request.</param>
    public void Attach(ITransport transport, DhtSender self, PeerIdentity identity)
    {
        _transport = transport;
        _identity = identity;
        Volatile.Write(ref _self, self);
    }

    /// <summary>A fresh request id (random start, then sequential, so ids of one node never repeat in practice).</summary>
    public ulong NextRequestId() => unchecked((ulong)Interlocked.Increment(ref _nextRequestId));

    /// <summary>A request of <paramref name="type"/> with a fresh id from this node.</summary>
    /// <param name="type">The request type.</param>
    public DhtMessage NewRequest(DhtMessageType type) => new(type, NextRequestId(), Self);

    /// <summary>Pings <paramref name="contact"/> (re-entering it into the table if it answers, marking it failed if not).</summary>
    /// <param name="contact">The contact to ping, which must answer with its id.</param>
    /// <param name="cancellationToken">Cancels the ping.</param>
    /// <returns>The answer, or null if the peer failed.</returns>
    public Task<DhtMessage?> PingAsync(DhtContact contact, CancellationToken cancellationToken) =>
        RequestAsync(contact.Address, contact.Id, NewRequest(DhtMessageType.Ping), cancellationToken);

    /// <summary>
    /// Sends one request on a fresh stream and reads its response. Null when the peer failed (refused, timed out,
    /// malformed or inconsistent answer), after marking it failed; otherwise the sender is recorded as seen.
    /// </summary>
    /// <param name="address">Where to send.</param>
    /// <param name="expectedId">The id the responder must have, or null for any.</param>
    /// <param name="request">The request.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    public async Task<DhtMessage?> RequestAsync(PeerAddress address, NodeId? expectedId, DhtMessage request, CancellationToken cancellationToken) =>
        (await RequestCoreAsync(address, expectedId, request, preferClaimedAddress: false, cancellationToken).ConfigureAwait(false)).Response;

    /// <summary>
    /// <see cref="RequestAsync"/> that also tells why a peer failed. The responder enters the routing table at the
    /// address it was reached at, or (<paramref name="preferClaimedAddress"/>, for initial peers known by an address
    /// only) at the listen address it claims. A peer that fails while in a bucket is marked failed and reported lost.
    /// </summary>
    /// <param name="address">Where to send.</param>
    /// <param name="expectedId">The id the responder must have, or null for any.</param>
    /// <param name="request">The request.</param>
    /// <param name="preferClaimedAddress">Whether the responder enters the table at the address it claims rather than at <paramref name="address"/>.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The response, or null and why the peer failed.</returns>
    public async Task<(DhtMessage? Response, string? Fault)> RequestCoreAsync(PeerAddress address, NodeId? expectedId, DhtMessage request, bool preferClaimedAddress, CancellationToken cancellationToken)
    {
        var transport = _transport ?? throw new InvalidOperationException($"DHT node {_id} is not started.");
        if (request.Nonce.IsEmpty)
        {
            request = request.WithAuthentication(_time.GetUtcNow().ToUnixTimeMilliseconds(), RandomNumberGenerator.GetBytes(DhtMessageCodec.NonceSize), default, default);
        }

        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop, timeout.Token);
        DhtMessage? response = null;
        string? fault = null;
        AuthenticatedPeer? proven = null;
        try
        {
            // A contact known by its id is pinned to it where the transport proves keys (tls://): an address without
            // an id gets the node id, which is the first 160 bits of the key's id.
            var target = address.PeerId is null && expectedId is { } pin ? address.WithPeerId(pin.ToString()) : address;
            var stream = await transport.ConnectAsync(target, linked.Token).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                proven = stream.GetService(typeof(AuthenticatedPeer)) as AuthenticatedPeer;
                await stream.WriteAsync(DhtMessageCodec.EncodeFrame(request, _identity!), linked.Token).ConfigureAwait(false);
                await stream.CompleteWritesAsync(linked.Token).ConfigureAwait(false);
                response = await DhtMessageCodec.ReadFrameAsync(stream, linked.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && !_stop.IsCancellationRequested)
        {
            fault = $"timed out after {_options.RequestTimeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s";
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return (null, "the local node stopped");
        }
        catch (Exception e) when (e is TransportException or DhtFormatException or IOException or ObjectDisposedException)
        {
            fault = e.Message;
        }

        fault ??= CheckResponse(request, response, expectedId);

        // One key per peer: a node whose transport proved a key must answer as that key's node id.
        if (fault is null && proven is not null && !proven.IsIdentifiedBy(response!.Sender.Id.ToString()))
        {
            fault = $"proved the key {proven.PeerId} but answered as node {response.Sender.Id}, which is not that key's id";
        }

        if (fault is not null)
        {
            if (expectedId is { } failed)
            {
                // Only a failure at the address the table holds counts against the node: a stale address from another
                // node's answer, or another node answering at an address said to be this id's, must not evict it.
                var known = _routing.Find(failed);
                if (known is null)
                {
                    _routing.MarkFailed(failed);
                }
                else if (known.Address == address && _routing.MarkFailed(failed))
                {
                    _lost(known);
                }
            }

            return (null, fault);
        }

        var claimed = response!.Sender.Address;
        _seen(new DhtContact(response.Sender.Id, preferClaimedAddress && !claimed.IsEmpty ? claimed : address));
        return (response, null);
    }

    private string? CheckResponse(DhtMessage request, DhtMessage? response, NodeId? expectedId)
    {
        if (response is null)
        {
            return "closed the stream without answering";
        }

        if (response.RequestId != request.RequestId)
        {
            return $"answered request {response.RequestId} instead of {request.RequestId}";
        }

        if (response.Type != request.Type + 1 && response.Type != DhtMessageType.Error)
        {
            return $"answered {request.Type} with {response.Type}";
        }

        if (!response.Sender.IsIdentityConsistent)
        {
            return $"answered with the id {response.Sender.Id}, which is not the hash of its public key";
        }

        if (expectedId is { } id && response.Sender.Id != id)
        {
            return $"answered as node {response.Sender.Id}, not the expected {id}";
        }

        if (!IdentityPuzzle.IsSolved(response.Sender.PublicKey.Span, response.Sender.PuzzleNonce, _options.PuzzleDifficulty))
        {
            return $"answered as node {response.Sender.Id}, whose puzzle nonce does not give {_options.PuzzleDifficulty} leading zero bits";
        }

        // The signature covers the request's nonce: the answer is this node's, to this request, not a replay of another.
        return DhtMessageCodec.VerifySignature(response, request.Nonce.Span) ? null : $"answered with a signature that does not verify against the key of node {response.Sender.Id} and this request";
    }
}
