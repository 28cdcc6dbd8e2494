using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Petals.Discovery;

namespace Petals.Server.Http.Health;

/// <summary>Reads the swarm every <see cref="HealthMonitorOptions.RefreshInterval"/> (on the injected <see cref="TimeProvider"/>) and keeps the last state.</summary>
internal sealed partial class SwarmHealthMonitor(IPeerDiscovery discovery, IOptions<HealthMonitorOptions> options, TimeProvider time, ILogger<SwarmHealthMonitor> logger) : BackgroundService
{
    private readonly HealthMonitorOptions _options = options.Value;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private SwarmHealthState? _state;
    private long _refreshes;

    /// <summary>The last state read (empty before the first read).</summary>
    public SwarmHealthState State => Volatile.Read(ref _state) ?? SwarmHealthState.Empty(_options.RefreshInterval.TotalSeconds);

    /// <summary>Reads the swarm now; a failed read keeps the previous models and records the error.</summary>
    public async Task<SwarmHealthState> RefreshAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.ReadTimeout);
            SwarmHealthState next;
            try
            {
                var reports = await SwarmReader.ReadAsync(discovery, null, cancellationToken: timeout.Token).ConfigureAwait(false);
                var now = time.GetUtcNow();
                next = new SwarmHealthState(now, _options.RefreshInterval.TotalSeconds, Interlocked.Increment(ref _refreshes), null, [.. reports.Select(r => SwarmHealthBuilder.Build(r, now))]);
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                var message = e is OperationCanceledException ? $"reading the swarm took longer than {_options.ReadTimeout.TotalSeconds:0.#} s" : e.Message;
                LogReadFailed(logger, message, e);
                next = State with { Error = message, RefreshSeconds = _options.RefreshInterval.TotalSeconds, Refreshes = Interlocked.Increment(ref _refreshes) };
            }

            Volatile.Write(ref _state, next);
            return next;
        }
        finally
        {
            _gate.Release();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.RefreshInterval, time);
        do
        {
            await RefreshAsync(stoppingToken).ConfigureAwait(false);
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    public override void Dispose()
    {
        _gate.Dispose();
        base.Dispose();
    }

    [LoggerMessage(EventId = 1701, Level = LogLevel.Warning, Message = "Reading the swarm failed: {Reason}")]
    private static partial void LogReadFailed(ILogger logger, string reason, Exception exception);
}
