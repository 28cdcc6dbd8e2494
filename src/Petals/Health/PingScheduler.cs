using Petals.Discovery;
using Petals.Models;
using Petals.Routing;

namespace Petals.Health;

/// <summary>
/// Pings servers a few at a time (<see cref="PeerHealthOptions.MaxConcurrentPings"/>) through an injected ping function
/// and reports the answers to an <see cref="IPeerHealth"/>; a ping that fails or takes longer than
/// <see cref="PeerHealthOptions.PingTimeout"/> is reported as unreachable and leaves the estimate unchanged.
/// </summary>
/// <remarks>Thread-safe; concurrent rounds each keep their own limit.</remarks>
internal sealed class PingScheduler
{
    private readonly IPeerHealth _health;
    private readonly Func<ServerInfo, CancellationToken, ValueTask<TimeSpan>> _ping;
    private readonly TimeProvider _time;
    private readonly int _parallelism;
    private readonly int _perBlock;
    private readonly TimeSpan _timeout;
    private readonly Random _random;
    private readonly Lock _randomLock = new();

    /// <summary>Creates the scheduler.</summary>
    /// <param name="health">Where measured round trips are reported (and which servers were measured is read).</param>
    /// <param name="ping">Measures one round trip to a server (e.g. an info request); throws when the server cannot be reached.</param>
    /// <param name="options">The concurrency and timeout (validated).</param>
    /// <param name="timeProvider">The clock of the ping timeout.</param>
    /// <param name="random">The randomness of <see cref="ChooseTargets"/>; a shared unseeded one when null.</param>
    public PingScheduler(IPeerHealth health, Func<ServerInfo, CancellationToken, ValueTask<TimeSpan>> ping, PeerHealthOptions options, TimeProvider timeProvider, Random? random = null)
    {
        ArgumentNullException.ThrowIfNull(health);
        ArgumentNullException.ThrowIfNull(ping);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        options.Validate();
        _health = health;
        _ping = ping;
        _time = timeProvider;
        _parallelism = options.MaxConcurrentPings;
        _perBlock = options.PingsPerBlock;
        _timeout = options.PingTimeout;
        _random = random ?? Random.Shared;
    }

    /// <summary>
    /// Chooses the servers of one ping round: for each block of <paramref name="blocks"/>, online servers that have it
    /// until <see cref="PeerHealthOptions.PingsPerBlock"/> chosen servers have it (fewer when fewer exist). Servers the
    /// health has no round trip for yet come first; among the rest the order is random, so that successive rounds spread
    /// over the swarm.
    /// </summary>
    /// <param name="servers">The announced servers (at most one entry per peer id).</param>
    /// <param name="blocks">The blocks a route may need.</param>
    /// <returns>The chosen servers, each once.</returns>
    public IReadOnlyList<ServerInfo> ChooseTargets(IReadOnlyList<ServerInfo> servers, BlockRange blocks)
    {
        ArgumentNullException.ThrowIfNull(servers);
        var known = _health.GetRoundTripTimes();
        var unmeasured = new List<ServerInfo>();
        var measured = new List<ServerInfo>();
        foreach (var server in servers)
        {
            if (server is not null && server.State == ServerState.Online && server.Span.Start < blocks.End && server.Span.End > blocks.Start)
            {
                (known.ContainsKey(server.PeerId) ? measured : unmeasured).Add(server);
            }
        }

        // Peer-id order before shuffling, so that a seeded random gives the same choice whatever order the servers came in.
        unmeasured.Sort((a, b) => string.CompareOrdinal(a.PeerId, b.PeerId));
        measured.Sort((a, b) => string.CompareOrdinal(a.PeerId, b.PeerId));
        var order = new ServerInfo[unmeasured.Count + measured.Count];
        unmeasured.CopyTo(order);
        measured.CopyTo(order, unmeasured.Count);
        lock (_randomLock)
        {
            _random.Shuffle(order.AsSpan(0, unmeasured.Count));
            _random.Shuffle(order.AsSpan(unmeasured.Count));
        }

        var have = new int[blocks.Count];
        var chosen = new List<ServerInfo>();
        var taken = new bool[order.Length];
        for (var b = blocks.Start; b < blocks.End; b++)
        {
            for (var i = 0; i < order.Length && have[b - blocks.Start] < _perBlock; i++)
            {
                if (taken[i] || !order[i].Span.Contains(b))
                {
                    continue;
                }

                taken[i] = true;
                chosen.Add(order[i]);
                for (var c = Math.Max(order[i].Span.Start, blocks.Start); c < Math.Min(order[i].Span.End, blocks.End); c++)
                {
                    have[c - blocks.Start]++;
                }
            }
        }

        return chosen;
    }

    /// <summary>Pings every server of <paramref name="servers"/>, at most the configured number at a time.</summary>
    /// <param name="servers">The servers to ping (a peer listed twice is pinged twice).</param>
    /// <param name="cancellationToken">Cancels the round.</param>
    /// <returns>The peer ids of the servers that did not answer in time, in ordinal order.</returns>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellationToken"/> is cancelled.</exception>
    public async Task<IReadOnlyList<string>> PingAsync(IReadOnlyList<ServerInfo> servers, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(servers);
        var unreachable = new List<string>();
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = _parallelism, CancellationToken = cancellationToken };
        await Parallel.ForEachAsync(servers, parallel, async (server, token) =>
        {
            if (!await PingOneAsync(server, token).ConfigureAwait(false))
            {
                lock (unreachable)
                {
                    unreachable.Add(server.PeerId);
                }
            }
        }).ConfigureAwait(false);
        unreachable.Sort(StringComparer.Ordinal);
        return unreachable;
    }

    private async ValueTask<bool> PingOneAsync(ServerInfo server, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        TimeSpan rtt;
        try
        {
            rtt = await _ping(server, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // Any failure of a ping (refused, reset, timed out, bad answer) means the server is unreachable.
        catch (Exception)
#pragma warning restore CA1031
        {
            return false;
        }

        if (timeout.IsCancellationRequested || rtt < TimeSpan.Zero)
        {
            return false; // answered too late, or the ping function measured nonsense
        }

        _health.ReportRoundTrip(server.PeerId, rtt);
        return true;
    }
}
