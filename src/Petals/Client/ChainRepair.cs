using System.Globalization;
using System.Runtime.ExceptionServices;
using Petals.Discovery;
using Petals.Health;
using Petals.Models;
using Petals.Routing;

namespace Petals.Client;

/// <summary>
/// Repairs chains: routes blocks again around servers that failed and connects the new segments through the pool
/// (<see cref="RouteAsync"/>), records each failure with the servers' health and decides when to give up
/// (<see cref="Failed"/>), and joins a replacement with a neighbouring segment on the same server
/// (<see cref="JoinNeighbors{T}"/>), so repeated recoveries do not fragment the chain.
/// </summary>
/// <remarks>Thread-safe: sessions of one sequence repair their own chains concurrently.</remarks>
internal sealed class ChainRepair(SwarmSequenceManager sequence, ConnectionPool pool, RemoteSequenceOptions options)
{
    /// <summary>The servers' view and health.</summary>
    public SwarmSequenceManager Sequence { get; } = sequence;

    /// <summary>
    /// Records that <paramref name="link"/>'s server failed with <paramref name="error"/>: its connection is retired if
    /// broken, the failure reported to the servers' health (a ban), logged and listed in <paramref name="attempts"/>.
    /// </summary>
    /// <exception cref="Exception">
    /// <paramref name="error"/> itself, unchanged, when <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/> is 0 (fail fast).
    /// </exception>
    /// <exception cref="RemoteChainException">When this was one failure more than <see cref="RemoteSequenceOptions.MaxRecoveryAttempts"/>; lists every failure.</exception>
    public void Failed(ChainLink link, Exception error, PeerFailureKind kind, RecoveryAttempts attempts)
    {
        pool.Retire(link.Connection, error);
        var address = link.Connection.Connection.RemoteAddress;
        Record(link.PeerId, address, link.Blocks, kind, error, attempts, "failed");
        if (options.MaxRecoveryAttempts == 0)
        {
            ExceptionDispatchInfo.Throw(error);
        }

        if (attempts.Count > options.MaxRecoveryAttempts)
        {
            throw new RemoteChainException(attempts.Describe(
                string.Create(CultureInfo.InvariantCulture, $"Gave up on model {Sequence.ModelId} after {attempts.Count} server failures in one step (MaxRecoveryAttempts is {options.MaxRecoveryAttempts}).")), error);
        }
    }

    /// <summary>
    /// Routes <paramref name="blocks"/> (for a session of <paramref name="batchSize"/> × <paramref name="maxLength"/>,
    /// or a stateless call when <paramref name="forward"/>) and connects every segment through the pool. A server that
    /// cannot be connected is recorded as failed and the blocks routed again; after the first failure each attempt
    /// waits <see cref="RemoteSequenceOptions.RecoveryBackoff"/>, doubling.
    /// </summary>
    /// <exception cref="RemoteChainException">When no route is left or the attempts are spent; lists every failure.</exception>
    public async Task<IReadOnlyList<ChainLink>> RouteAsync(BlockRange blocks, int batchSize, int maxLength, bool forward, RecoveryAttempts attempts, CancellationToken cancellationToken, string? adapter = null)
    {
        while (true)
        {
            pool.ThrowIfDisposed();
            if (attempts.Count > 1)
            {
                var factor = 1L << Math.Min(attempts.Count - 2, 5);
                await Task.Delay(options.RecoveryBackoff * factor, Sequence.Time, cancellationToken).ConfigureAwait(false);
            }

            var route = await RouteAroundAsync(blocks, batchSize, maxLength, forward, attempts, adapter, cancellationToken).ConfigureAwait(false);
            var (links, failures) = await ConnectAsync(route, cancellationToken).ConfigureAwait(false);
            if (links is not null)
            {
                return links;
            }

            foreach (var (segment, error, kind) in failures)
            {
                Record(segment.Server.PeerId, segment.Server.Address, segment.Blocks, kind, error, attempts, "could not be connected");
            }

            if (attempts.Count > options.MaxRecoveryAttempts)
            {
                throw new RemoteChainException(attempts.Describe(
                    string.Create(CultureInfo.InvariantCulture, $"Could not route blocks {blocks} of model {Sequence.ModelId} to a server that answers ({attempts.Count} failures; MaxRecoveryAttempts is {options.MaxRecoveryAttempts}).")));
            }
        }
    }

    /// <summary>
    /// Connects every segment of <paramref name="route"/> through the pool, in parallel: the links when all connected,
    /// else each segment that failed, why, and how detection classifies it. Caller cancellation propagates.
    /// </summary>
    public async Task<(IReadOnlyList<ChainLink>? Links, List<(RouteSegment Segment, Exception Error, PeerFailureKind Kind)> Failures)> ConnectAsync(
        IReadOnlyList<RouteSegment> route, CancellationToken cancellationToken)
    {
        var connecting = route.Select(s => pool.AcquireAsync(s.Server, s.Blocks, cancellationToken)).ToArray();
        try
        {
            await Task.WhenAll(connecting).ConfigureAwait(false);
            return ([.. connecting.Select((t, k) => new ChainLink(t.Result, route[k].Blocks, route[k].Server.PeerId))], []);
        }
        catch (Exception)
        {
            // The caller's cancellation wins over a failure that raced it; otherwise each failed server is read from its task.
            cancellationToken.ThrowIfCancellationRequested();
        }

        var failures = new List<(RouteSegment, Exception, PeerFailureKind)>();
        for (var k = 0; k < connecting.Length; k++)
        {
            if (connecting[k].Exception?.InnerException is { } error)
            {
                var kind = PeerFailureClassifier.Classify(error, cancellationToken, connecting: true);
                if (kind is null)
                {
                    ExceptionDispatchInfo.Throw(error);
                }

                failures.Add((route[k], error, kind.Value));
            }
        }

        return (null, failures);
    }

    /// <summary>
    /// Joins the <paramref name="count"/> replacements at <paramref name="index"/> of <paramref name="chain"/> with a
    /// neighbour on the same server whose blocks touch theirs (one segment instead of two saves a hop on every later
    /// token). <paramref name="join"/> makes the joined segment from the earlier and the later one; <paramref name="retire"/>
    /// receives the segment whose stream the join leaves behind.
    /// </summary>
    /// <returns>The index the step resumes at: the first segment that has not yet run the step.</returns>
    public static int JoinNeighbors<T>(List<T> chain, int index, int count, Func<T, T, bool> canJoin, Func<T, T, T> join, Action<T> retire)
    {
        var last = index + count - 1;
        if (last + 1 < chain.Count && canJoin(chain[last], chain[last + 1]))
        {
            var next = chain[last + 1];
            chain[last] = join(chain[last], next);
            chain.RemoveAt(last + 1);
            retire(next);
        }

        if (index > 0 && canJoin(chain[index - 1], chain[index]))
        {
            var previous = chain[index - 1];
            chain[index - 1] = join(previous, chain[index]);
            chain.RemoveAt(index);
            retire(previous);
            return index - 1;
        }

        return index;
    }

    /// <summary>
    /// Routes <paramref name="blocks"/> around the servers that already failed in this step (they are banned, but a ban
    /// yields when nothing else covers a block, and a server that keeps failing must not be picked again while one
    /// banned earlier may have recovered). When only such servers are left, the step's first failure retries them at once
    /// (a block's only server may have failed transiently) without waiting for the discovery; later ones read the swarm
    /// again first (a replacement may have been announced since), and failing that the bans alone decide.
    /// </summary>
    private async Task<IReadOnlyList<RouteSegment>> RouteAroundAsync(BlockRange blocks, int batchSize, int maxLength, bool forward, RecoveryAttempts attempts, string? adapter, CancellationToken cancellationToken)
    {
        var route = TryRoute(blocks, batchSize, maxLength, forward, attempts.Peers, adapter);
        if (route is null && attempts.Count <= 1)
        {
            route = TryRoute(blocks, batchSize, maxLength, forward, null, adapter);
        }

        if (route is not null)
        {
            return route;
        }

        await Sequence.RefreshAsync(cancellationToken).ConfigureAwait(false);
        route = TryRoute(blocks, batchSize, maxLength, forward, attempts.Peers, adapter);
        if (route is not null)
        {
            return route;
        }

        try
        {
            return Route(blocks, batchSize, maxLength, forward, null, adapter);
        }
        catch (RemoteChainException e) when (attempts.Count > 0)
        {
            throw new RemoteChainException(attempts.Describe($"No server is left for blocks {blocks}: {e.Message}"), e);
        }
    }

    private IReadOnlyList<RouteSegment>? TryRoute(BlockRange blocks, int batchSize, int maxLength, bool forward, IReadOnlySet<string>? exclude, string? adapter)
    {
        try
        {
            return Route(blocks, batchSize, maxLength, forward, exclude, adapter);
        }
        catch (RemoteChainException)
        {
            return null;
        }
    }

    private IReadOnlyList<RouteSegment> Route(BlockRange blocks, int batchSize, int maxLength, bool forward, IReadOnlySet<string>? exclude, string? adapter) =>
        forward
            ? Sequence.RouteForward(exclude, blocks, options.RequiredQuantization, adapter)
            : Sequence.RouteInference(batchSize, maxLength, exclude, blocks, options.RequiredQuantization, adapter);

    private void Record(string peerId, Transport.PeerAddress address, BlockRange blocks, PeerFailureKind kind, Exception error, RecoveryAttempts attempts, string what)
    {
        var ban = Sequence.Health.ReportFailure(peerId, kind);
        attempts.Add(peerId, string.Create(CultureInfo.InvariantCulture, $"server {PeerIds.Short(peerId)} at {address} (blocks {blocks}) {what}: {error.Message}"));
        ClientLog.ServerFailed(Sequence.Logger, peerId, address.ToString(), blocks.ToString(), Sequence.ModelId, kind.Value, ban.TotalSeconds, error);
    }
}
