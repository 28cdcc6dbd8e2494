using Petals.Discovery;

namespace Petals.Client.Routing;

/// <summary>
/// Pings servers a few at a time (<see cref="RouterOptions.MaxConcurrentPings"/>) through an injected ping function
/// and feeds the answers into an <see cref="RttTracker"/>; a ping that fails or takes longer than
/// <see cref="RouterOptions.PingTimeout"/> is reported as unreachable and leaves the estimate unchanged.
/// </summary>
/// <remarks>Thread-safe; concurrent rounds each keep their own limit.</remarks>
internal sealed class PingScheduler
{
    private readonly RttTracker _tracker;
    private readonly Func<ServerInfo, CancellationToken, ValueTask<TimeSpan>> _ping;
    private readonly TimeProvider _time;
    private readonly int _parallelism;
    private readonly TimeSpan _timeout;

    /// <summary>Creates the scheduler.</summary>
    /// <param name="tracker">Where measured round trips go.</param>
    /// <param name="ping">Measures one round trip to a server (e.g. an info request); throws when the server cannot be reached.</param>
    /// <param name="options">The concurrency and timeout (validated).</param>
    /// <param name="timeProvider">The clock of the ping timeout.</param>
    public PingScheduler(RttTracker tracker, Func<ServerInfo, CancellationToken, ValueTask<TimeSpan>> ping, RouterOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(tracker);
        ArgumentNullException.ThrowIfNull(ping);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        options.Validate();
        _tracker = tracker;
        _ping = ping;
        _time = timeProvider;
        _parallelism = options.MaxConcurrentPings;
        _timeout = options.PingTimeout;
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

        _tracker.AddSample(server.PeerId, rtt);
        return true;
    }
}
