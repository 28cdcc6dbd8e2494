using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// The node's serving side: accepts streams on the listener (at most <see cref="DhtNodeOptions.MaxConcurrentRequests"/>
/// at once; further connections wait to be accepted), reads one request per stream within
/// <see cref="DhtNodeOptions.RequestTimeout"/> (which bounds slow and idle senders) and answers PING, STORE, FIND_NODE and FIND_VALUE (docs/dht-protocol.md).
/// Every valid listening sender is reported as seen; a malformed request or a sender whose id is not the hash of its
/// key gets an ERROR. A connection from an address that already holds <see cref="DhtNodeOptions.MaxRequestsPerAddress"/>
/// streams is aborted at once with the reason. Thread-safe.
/// </summary>
internal sealed class DhtRpcHandler : IAsyncDisposable
{
    private readonly ITransportListener _listener;
    private readonly DhtSender _self;
    private readonly DhtNodeOptions _options;
    private readonly TimeProvider _time;
    private readonly RoutingTable _routing;
    private readonly RecordStorage _storage;
    private readonly Action<DhtContact> _seen;
    private readonly SemaphoreSlim _serving;
    private readonly BackgroundTasks _streams = new();
    private Task? _acceptLoop;
    private long _requestsServed;
    private long _requestsRefused;
    private readonly Dictionary<string, int> _perAddress = new(StringComparer.Ordinal);

    /// <summary>Creates the handler; <see cref="Start"/> begins accepting.</summary>
    /// <param name="listener">Where requests arrive; disposed by <see cref="DisposeAsync"/>.</param>
    /// <param name="self">The local node as the sender of every answer.</param>
    /// <param name="options">The node's settings.</param>
    /// <param name="timeProvider">The clock for the per-request timeout.</param>
    /// <param name="routing">The table FIND_NODE and FIND_VALUE answer from.</param>
    /// <param name="storage">The records STORE writes and FIND_VALUE reads.</param>
    /// <param name="seen">Called with every requester that has a listen address and a consistent identity.</param>
    public DhtRpcHandler(ITransportListener listener, DhtSender self, DhtNodeOptions options, TimeProvider timeProvider, RoutingTable routing, RecordStorage storage, Action<DhtContact> seen)
    {
        _listener = listener;
        _self = self;
        _options = options;
        _time = timeProvider;
        _routing = routing;
        _storage = storage;
        _seen = seen;
        _serving = new SemaphoreSlim(options.MaxConcurrentRequests, options.MaxConcurrentRequests);
    }

    /// <summary>How many requests were received and answered (malformed ones included).</summary>
    public long RequestsServed => Interlocked.Read(ref _requestsServed);

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

    /// <summary>Answers one decoded request.</summary>
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

        // A client-mode sender (no listen address) is answered but never remembered, so it is never handed out in NODES.
        if (!request.Sender.Address.IsEmpty)
        {
            _seen(request.Sender.ToContact());
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

    private async Task ServeAsync(ITransportStream stream, CancellationToken stop)
    {
        await using (stream.ConfigureAwait(false))
        {
            using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, timeout.Token);
            try
            {
                DhtMessage response;
                try
                {
                    var request = await DhtMessageCodec.ReadFrameAsync(stream, linked.Token).ConfigureAwait(false);
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
}
