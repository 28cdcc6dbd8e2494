namespace Petals.Discovery;

/// <summary>
/// Kademlia's iterative lookup: asks the closest known candidates for closer nodes, alpha requests in flight
/// (<see cref="DhtNodeOptions.Alpha"/>), until the k closest non-failed candidates have all answered or failed;
/// FIND_VALUE lookups also collect the valid sub-records every answering node returns. Publishing a record is a
/// lookup of its key followed by a STORE at the k closest nodes. Thread-safe (each lookup keeps its own state).
/// </summary>
internal sealed class DhtLookup
{
    private readonly NodeId _id;
    private readonly DhtNodeOptions _options;
    private readonly RoutingTable _routing;
    private readonly RecordStorage _storage;
    private readonly DhtRpcClient _client;

    /// <summary>Creates the lookup of one node.</summary>
    /// <param name="id">The local node's id (never a candidate).</param>
    /// <param name="options">The node's settings (k and alpha).</param>
    /// <param name="routing">Where lookups start and what they mark refreshed.</param>
    /// <param name="storage">The local records (a value lookup includes them; a publish may keep a replica) and their validator.</param>
    /// <param name="client">Sends the lookup's requests.</param>
    public DhtLookup(NodeId id, DhtNodeOptions options, RoutingTable routing, RecordStorage storage, DhtRpcClient client)
    {
        _id = id;
        _options = options;
        _routing = routing;
        _storage = storage;
        _client = client;
    }

    /// <summary>Looks up the k nodes closest to <paramref name="target"/>.</summary>
    /// <param name="target">The id to look up.</param>
    /// <param name="cancellationToken">Cancels the lookup.</param>
    /// <returns>The closest nodes that answered, with hop and message counts.</returns>
    public async Task<DhtLookupResult> FindNodeAsync(NodeId target, CancellationToken cancellationToken) =>
        (await LookupAsync(target, null, cancellationToken).ConfigureAwait(false)).Lookup;

    /// <summary>Finds the valid records of <paramref name="key"/> at the k nodes closest to it and in local storage.</summary>
    /// <param name="key">A valid key.</param>
    /// <param name="cancellationToken">Cancels the lookup.</param>
    /// <returns>One record per sub-key (the latest expiration), ordered by sub-key.</returns>
    public async Task<DhtValueResult> GetAsync(string key, CancellationToken cancellationToken)
    {
        var (lookup, found) = await LookupAsync(NodeId.FromKey(key), key, cancellationToken).ConfigureAwait(false);
        foreach (var record in _storage.Get(key))
        {
            Merge(found!, record);
        }

        var records = found!.Values.OrderBy(r => r.SubKey).ToArray();
        return new DhtValueResult(key, records, lookup);
    }

    /// <summary>
    /// Stores <paramref name="record"/> at the k nodes closest to its key: the local node keeps a replica when it is one
    /// of them (never in client mode), and the farthest remote one drops out.
    /// </summary>
    /// <param name="record">A valid record.</param>
    /// <param name="cancellationToken">Cancels the store.</param>
    /// <returns>Every node's verdict.</returns>
    public async Task<DhtStoreResult> PublishAsync(DhtRecord record, CancellationToken cancellationToken)
    {
        var keyId = record.KeyId;
        var (lookup, _) = await LookupAsync(keyId, null, cancellationToken).ConfigureAwait(false);
        var replies = new List<DhtStoreReply>();
        var closest = lookup.Closest;
        var self = _client.Self;

        // A client-mode node (no listen address) is no node of the network: it never keeps a replica.
        if (!self.Address.IsEmpty && (closest.Count < _options.K || keyId.CompareDistance(_id, closest[^1].Id) < 0))
        {
            replies.Add(new DhtStoreReply(self.ToContact(), _storage.Store(record)));
            closest = closest.Take(_options.K - 1).ToArray();
        }

        var sends = closest.Select(async contact =>
        {
            var request = new DhtMessage(DhtMessageType.Store, _client.NextRequestId(), self) { Records = [record] };
            var response = await _client.RequestAsync(contact.Address, contact.Id, request, cancellationToken).ConfigureAwait(false);
            RecordValidationResult? result = response is { Type: DhtMessageType.StoreResult, StoreResults.Count: 1 } ? response.StoreResults[0] : null;
            return new DhtStoreReply(contact, result);
        }).ToArray();
        replies.AddRange(await Task.WhenAll(sends).ConfigureAwait(false));
        return new DhtStoreResult(record, replies, lookup);
    }

    private static void Merge(Dictionary<NodeId, DhtRecord> found, DhtRecord record)
    {
        if (!found.TryGetValue(record.SubKey, out var existing) || existing.ExpirationUnixMilliseconds < record.ExpirationUnixMilliseconds)
        {
            found[record.SubKey] = record;
        }
    }

    private async Task<(DhtLookupResult Lookup, Dictionary<NodeId, DhtRecord>? Records)> LookupAsync(NodeId target, string? key, CancellationToken cancellationToken)
    {
        var k = _options.K;
        var records = key is null ? null : new Dictionary<NodeId, DhtRecord>();
        var comparer = new NodeIdDistanceComparer(target);
        var byDistance = Comparer<Candidate>.Create((a, b) => comparer.Compare(a.Contact.Id, b.Contact.Id));
        var ordered = new List<Candidate>();
        var seen = new HashSet<NodeId> { _id };
        void Add(DhtContact contact, int depth)
        {
            if (!seen.Add(contact.Id))
            {
                return;
            }

            var candidate = new Candidate(contact, depth);
            var index = ordered.BinarySearch(candidate, byDistance);
            ordered.Insert(index < 0 ? ~index : index, candidate);
        }

        foreach (var contact in _routing.FindClosest(target, k, _id))
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
                if (candidate.State == CandidateState.Failed)
                {
                    continue;
                }

                if (++eligible > k || inFlight.Count >= limit)
                {
                    break;
                }

                if (candidate.State == CandidateState.NotAsked)
                {
                    candidate.State = CandidateState.Asked;
                    messages++;
                    var request = key is null
                        ? new DhtMessage(DhtMessageType.FindNode, _client.NextRequestId(), _client.Self) { Target = target }
                        : new DhtMessage(DhtMessageType.FindValue, _client.NextRequestId(), _client.Self) { Key = key };
                    inFlight.Add((_client.RequestAsync(candidate.Contact.Address, candidate.Contact.Id, request, cancellationToken), candidate));
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
                answered.State = CandidateState.Failed;
                continue;
            }

            answered.State = CandidateState.Answered;
            var closestBefore = ordered.Find(c => c.State != CandidateState.Failed)?.Contact.Id;
            foreach (var contact in response.Contacts)
            {
                Add(contact, answered.Depth + 1);
            }

            var closestAfter = ordered.Find(c => c.State != CandidateState.Failed)?.Contact.Id;
            stalled = closestBefore is { } before && closestAfter is { } after && comparer.Compare(after, before) >= 0;

            if (records is not null)
            {
                foreach (var record in response.Records)
                {
                    if (record.Key == key && _storage.Validator.Validate(record).IsAccepted)
                    {
                        Merge(records, record);
                    }
                }
            }
        }

        _routing.MarkRefreshed(target);
        var closest = ordered.Where(c => c.State == CandidateState.Answered).Take(k).ToArray();
        var hops = closest.Length == 0 ? 0 : closest.Max(c => c.Depth);
        return (new DhtLookupResult(target, closest.Select(c => c.Contact).ToArray(), hops, messages), records);
    }

    private enum CandidateState
    {
        NotAsked,
        Asked,
        Answered,
        Failed,
    }

    /// <summary>A node the lookup heard of: its contact, how many referrals away it was found, and how it answered.</summary>
    private sealed class Candidate(DhtContact contact, int depth)
    {
        public DhtContact Contact { get; } = contact;

        public int Depth { get; } = depth;

        public CandidateState State { get; set; }
    }
}
