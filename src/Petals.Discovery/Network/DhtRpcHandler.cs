using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// The node's serving side: accepts streams on the listener (at most <see cref="DhtNodeOptions.MaxConcurrentRequests"/>
/// at once; further connections wait to be accepted), reads one request per stream within
/// <see cref="DhtNodeOptions.RequestTimeout"/> and answers PING, STORE, FIND_NODE and FIND_VALUE (docs/dht-protocol.md).
/// Every request is authenticated first (<see cref="Authenticate"/>): its version, the remote host's and the sender's
/// rates, the identity puzzle, the signature, the timestamp window and the nonce; anything refused gets a precise
/// ERROR and is never reported as seen. Every answer is signed, bound to the request's nonce. Every authenticated
/// listening sender is reported, with the address its stream came from, for address verification. A connection from an
/// address that already holds <see cref="DhtNodeOptions.MaxRequestsPerAddress"/> streams is aborted at once with the
/// reason; <see cref="DhtNodeOptions.RequestTimeout"/> bounds slow and idle senders. Thread-safe.
/// </summary>
internal sealed class DhtRpcHandler : IAsyncDisposable
{
    private readonly ITransportListener _listener;
    private readonly DhtSender _self;
    private readonly PeerIdentity _identity;
    private readonly DhtNodeOptions _options;
    private readonly TimeProvider _time;
    private readonly RoutingTable _routing;
    private readonly RecordStorage _storage;
    private readonly Action<DhtContact, PeerAddress> _seen;
    private readonly SemaphoreSlim _serving;
    private readonly BackgroundTasks _streams = new();
    private readonly TokenBuckets<NodeId> _senderRequests;
    private readonly TokenBuckets<NodeId> _senderRecords;
    private readonly TokenBuckets<string> _hostRequests;
    private readonly ReplayCache _replays;
    private Task? _acceptLoop;
    private long _requestsServed;
    private readonly Dictionary<string, int> _perAddress = new(StringComparer.Ordinal);
    private long _rateLimited;
    private long _unauthenticated;
    private long _requestsRefused;

    /// <summary>Creates the handler; <see cref="Start"/> begins accepting.</summary>
    /// <param name="listener">Where requests arrive; disposed by <see cref="DisposeAsync"/>.</param>
    /// <param name="self">The local node as the sender of every answer.</param>
    /// <param name="identity">The local node's key, which signs every answer.</param>
    /// <param name="options">The node's settings.</param>
    /// <param name="timeProvider">The clock for the per-request timeout.</param>
    /// <param name="routing">The table FIND_NODE and FIND_VALUE answer from.</param>
    /// <param name="storage">The records STORE writes and FIND_VALUE reads.</param>
    /// <param name="seen">Called with every authenticated requester that has a listen address, and the address its stream came from.</param>
    public DhtRpcHandler(ITransportListener listener, DhtSender self, PeerIdentity identity, DhtNodeOptions options, TimeProvider timeProvider, RoutingTable routing, RecordStorage storage, Action<DhtContact, PeerAddress> seen)
    {
        _listener = listener;
        _self = self;
        _identity = identity;
        _options = options;
        _time = timeProvider;
        _routing = routing;
        _storage = storage;
        _seen = seen;
        _serving = new SemaphoreSlim(options.MaxConcurrentRequests, options.MaxConcurrentRequests);
        _senderRequests = new TokenBuckets<NodeId>(options.SenderRequestsPerSecond, options.SenderRequestBurst, options.MaxRateLimitedPeers, timeProvider);
        _senderRecords = new TokenBuckets<NodeId>(options.SenderRecordsPerSecond, options.SenderRecordBurst, options.MaxRateLimitedPeers, timeProvider);
        _hostRequests = new TokenBuckets<string>(options.HostRequestsPerSecond, options.HostRequestBurst, options.MaxRateLimitedPeers, timeProvider);
        _replays = new ReplayCache(options.MaxReplayCacheEntries, options.RequestClockSkew, timeProvider);
    }

    /// <summary>How many requests were received and answered (malformed and refused ones included).</summary>
    public long RequestsServed => Interlocked.Read(ref _requestsServed);

    /// <summary>How many requests were refused as RateLimited.</summary>
    public long RequestsRateLimited => Interlocked.Read(ref _rateLimited);

    /// <summary>How many requests were refused as not authentic (old version, identity mismatch, puzzle, signature, stale, replayed).</summary>
    public long RequestsUnauthenticated => Interlocked.Read(ref _unauthenticated);

    /// <summary>How many connections were aborted at once for their address's limit.</summary>
    public long RequestsRefused => Interlocked.Read(ref _requestsRefused);

    /// <summary>Starts the accept loop, which runs until <paramref name="stop"/> is cancelled or the listener closes.</summary>
    /// <param name="stop">Cancelled when the node stops.</param>
    public void Start(CancellationToken stop) => _acceptLoop = AcceptLoopAsync(stop);

    /// <summary>Closes the listener and waits for the accept loop and every stream being served (cancel the stop token first).</summary>
    /// <returns>A task that completes when nothing is served any more.</returns>
    public async ValueTask DisposeAsync()
    {
        await _listener.DisposeAsync().ConfigureAwait(false);
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }

        await _streams.WhenAllAsync().ConfigureAwait(false);
        _serving.Dispose();
    }

    /// <summary>
    /// Checks a decoded request before it is answered, cheapest first: the remote host's rate, the sender's identity
    /// (id = hash of key), the identity puzzle, the signature, the timestamp window, the sender's request rate (and, for
    /// STORE, its record rate) and last the nonce (so that a refused request does not use up its nonce).
    /// </summary>
    /// <param name="request">The decoded request.</param>
    /// <param name="remote">The address the request's stream came from.</param>
    /// <returns>The ERROR to answer with, or null when the request is authentic and within its rates.</returns>
    public DhtMessage? Authenticate(DhtMessage request, PeerAddress remote)
    {
        if (TryGetHost(remote) is { } host && !_hostRequests.TryTake(host, 1))
        {
            return Refuse(ref _rateLimited, request, DhtErrorCode.RateLimited, $"The host {host} exceeded {_options.HostRequestsPerSecond} requests/s (burst {_options.HostRequestBurst}); retry later.");
        }

        if (!request.Sender.IsIdentityConsistent)
        {
            return Refuse(ref _unauthenticated, request, DhtErrorCode.IdentityMismatch, $"The sender id {request.Sender.Id} is not the hash of the sender's public key.");
        }

        if (!IdentityPuzzle.IsSolved(request.Sender.PublicKey.Span, request.Sender.PuzzleNonce, _options.PuzzleDifficulty))
        {
            return Refuse(ref _unauthenticated, request, DhtErrorCode.InsufficientWork, $"The sender {request.Sender.Id}'s puzzle nonce {request.Sender.PuzzleNonce} does not give {_options.PuzzleDifficulty} leading zero bits.");
        }

        if (!DhtMessageCodec.VerifySignature(request, default))
        {
            return Refuse(ref _unauthenticated, request, DhtErrorCode.Unauthenticated, $"The {request.Type} request's signature does not verify against the key of its sender {request.Sender.Id}.");
        }

        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var skew = (long)_options.RequestClockSkew.TotalMilliseconds;
        if (Math.Abs(now - request.TimestampUnixMilliseconds) > skew)
        {
            return Refuse(ref _unauthenticated, request, DhtErrorCode.StaleRequest, $"The request was signed at {request.TimestampUnixMilliseconds} ms (Unix), {now - request.TimestampUnixMilliseconds} ms from this node's clock; at most {skew} ms either way.");
        }

        if (!_senderRequests.TryTake(request.Sender.Id, 1))
        {
            return Refuse(ref _rateLimited, request, DhtErrorCode.RateLimited, $"The sender {request.Sender.Id} exceeded {_options.SenderRequestsPerSecond} requests/s (burst {_options.SenderRequestBurst}); retry later.");
        }

        if (request.Type == DhtMessageType.Store && !_senderRecords.TryTake(request.Sender.Id, request.Records.Count))
        {
            return Refuse(ref _rateLimited, request, DhtErrorCode.RateLimited, $"The sender {request.Sender.Id} exceeded {_options.SenderRecordsPerSecond} stored records/s (burst {_options.SenderRecordBurst}); {request.Records.Count} records refused, retry later.");
        }

        return _replays.TryAdd(request.Nonce.Span) switch
        {
            ReplayCache.Outcome.Added => null,
            ReplayCache.Outcome.Replayed => Refuse(ref _unauthenticated, request, DhtErrorCode.Replayed, $"The request's nonce was already used by an accepted request: a replay."),
            _ => Refuse(ref _rateLimited, request, DhtErrorCode.RateLimited, $"The replay cache holds its maximum of {_options.MaxReplayCacheEntries} recent nonces; retry later."),
        };
    }

    /// <summary>The host of a <c>host:port</c> address, or null for an address without one (e.g. the in-memory transport's).</summary>
    /// <param name="address">The address.</param>
    public static string? TryGetHost(PeerAddress address)
    {
        if (address.IsEmpty)
        {
            return null;
        }

        try
        {
            return address.Host;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>Answers one decoded (and authenticated) request.</summary>
    /// <param name="request">The request.</param>
    /// <returns>The response (an ERROR for a response type or an inconsistent sender identity).</returns>
    public DhtMessage Handle(DhtMessage request)
    {
        if (!request.IsRequest)
        {
            return Error(request.RequestId, DhtErrorCode.UnexpectedType, $"{request.Type} is not a request.");
        }

        if (!request.Sender.IsIdentityConsistent)
        {
            return Error(request.RequestId, DhtErrorCode.IdentityMismatch, $"The sender id {request.Sender.Id} is not the hash of the sender's public key.");
        }

        switch (request.Type)
        {
            case DhtMessageType.Ping:
                return new DhtMessage(DhtMessageType.Pong, request.RequestId, _self);
            case DhtMessageType.Store:
                var results = new RecordValidationResult[request.Records.Count];
                for (var i = 0; i < results.Length; i++)
                {
                    results[i] = _storage.Store(request.Records[i]);
                }

                return new DhtMessage(DhtMessageType.StoreResult, request.RequestId, _self) { StoreResults = results };
            case DhtMessageType.FindNode:
                return new DhtMessage(DhtMessageType.Nodes, request.RequestId, _self) { Contacts = _routing.FindClosest(request.Target, _options.K, request.Sender.Id) };
            default:
                return new DhtMessage(DhtMessageType.Value, request.RequestId, _self)
                {
                    Records = RecordsThatFit(request.Key),
                    Contacts = _routing.FindClosest(NodeId.FromKey(request.Key), _options.K, request.Sender.Id),
                };
        }
    }

    // The records of a key in the order storage gives them, as many as fit one VALUE frame with room left for the
    // contacts and header (64 KiB), and at most the codec's record count.
    private List<DhtRecord> RecordsThatFit(string key)
    {
        var records = new List<DhtRecord>();
        long budget = DhtMessageCodec.MaxFrameBytes - 64 * 1024;
        foreach (var record in _storage.Get(key))
        {
            budget -= DhtRecordCodec.GetEncodedLength(record);
            if (budget < 0 || records.Count == DhtMessageCodec.MaxRecords)
            {
                break;
            }

            records.Add(record);
        }

        return records;
    }

    private DhtMessage Error(ulong requestId, DhtErrorCode code, string message) =>
        new(DhtMessageType.Error, requestId, _self) { ErrorCode = code, ErrorMessage = message };

    private DhtMessage Refuse(ref long counter, DhtMessage request, DhtErrorCode code, string message)
    {
        Interlocked.Increment(ref counter);
        return Error(request.RequestId, code, message);
    }

    private async Task AcceptLoopAsync(CancellationToken stop)
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
                stream = await _listener.AcceptAsync(stop).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or TransportException)
            {
                _serving.Release();
                return;
            }

            var address = AddressKey(stream.RemoteAddress);
            if (!TryAdmit(address))
            {
                Interlocked.Increment(ref _requestsRefused);
                _serving.Release();
                stream.Abort($"this DHT node already serves {_options.MaxRequestsPerAddress} requests from {address}; retry later");
                _streams.Track(stream.DisposeAsync().AsTask());
                continue;
            }

            _streams.Track(ServeAndReleaseAsync(stream, address, stop));
        }
    }

    /// <summary>The key of the per-address limit: the host of a host:port address, the whole location of any other.</summary>
    private static string AddressKey(PeerAddress remote)
    {
        if (remote.IsEmpty)
        {
            return string.Empty;
        }

        try
        {
            return remote.Host;
        }
        catch (FormatException)
        {
            return remote.Scheme + "://" + remote.Location;
        }
    }

    private bool TryAdmit(string address)
    {
        lock (_perAddress)
        {
            _perAddress.TryGetValue(address, out var count);
            if (count >= _options.MaxRequestsPerAddress)
            {
                return false;
            }

            _perAddress[address] = count + 1;
            return true;
        }
    }

    private async Task ServeAndReleaseAsync(ITransportStream stream, string address, CancellationToken stop)
    {
        try
        {
            await ServeAsync(stream, stop).ConfigureAwait(false);
        }
        finally
        {
            lock (_perAddress)
            {
                if (_perAddress[address] > 1)
                {
                    _perAddress[address]--;
                }
                else
                {
                    _perAddress.Remove(address);
                }
            }

            _serving.Release();
        }
    }

    // Decodes, authenticates and answers one request body; the answer is a signed frame bound to the request's nonce.
    private byte[] Answer(byte[] body, PeerAddress remote)
    {
        if (body[0] != DhtMessageCodec.Version)
        {
            Interlocked.Increment(ref _unauthenticated);
            var requestId = DhtMessageCodec.PeekRequestId(body);
            var text = $"Protocol version {body[0]} is not supported; this node speaks version {DhtMessageCodec.Version} (signed requests).";
            return body[0] == DhtMessageCodec.LegacyVersion
                ? DhtMessageCodec.EncodeLegacyError(requestId, _self, DhtErrorCode.UnsupportedVersion, text)
                : DhtMessageCodec.EncodeFrame(Stamp(Error(requestId, DhtErrorCode.UnsupportedVersion, text)), _identity);
        }

        var request = DhtMessageCodec.Decode(body);
        DhtMessage response;
        if (!request.IsRequest)
        {
            response = Error(request.RequestId, DhtErrorCode.UnexpectedType, $"{request.Type} is not a request.");
        }
        else if (Authenticate(request, remote) is { } refusal)
        {
            response = refusal;
        }
        else
        {
            // A client-mode sender (no listen address) is answered but never remembered, so it is never handed out in NODES.
            if (!request.Sender.Address.IsEmpty)
            {
                _seen(request.Sender.ToContact(), remote);
            }

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

        return DhtMessageCodec.EncodeFrame(Stamp(response), _identity, request.Nonce.Span);
    }

    private DhtMessage Stamp(DhtMessage response) => response.WithAuthentication(_time.GetUtcNow().ToUnixTimeMilliseconds(), default, default, default);

    private async Task ServeAsync(ITransportStream stream, CancellationToken stop)
    {
        await using (stream.ConfigureAwait(false))
        {
            using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, timeout.Token);
            try
            {
                byte[] frame;
                try
                {
                    var body = await DhtMessageCodec.ReadFrameBodyAsync(stream, linked.Token).ConfigureAwait(false);
                    if (body is null)
                    {
                        return;
                    }

                    Interlocked.Increment(ref _requestsServed);
                    frame = Answer(body, stream.RemoteAddress);
                }
                catch (DhtFormatException e)
                {
                    Interlocked.Increment(ref _requestsServed);
                    frame = DhtMessageCodec.EncodeFrame(Stamp(Error(0, DhtErrorCode.Malformed, e.Message)), _identity);
                }

                await stream.WriteAsync(frame, linked.Token).ConfigureAwait(false);
                await stream.CompleteWritesAsync(linked.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or TransportException or IOException or ObjectDisposedException)
            {
                // The requester went away, the request timed out or the node is stopping: nothing to answer.
            }
        }
    }
}
