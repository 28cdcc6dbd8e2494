using System.Diagnostics;
using System.Globalization;
using Petals.Cli.Swarm;
using Petals.Client;
using Petals.Discovery;
using Petals.Models;
using Petals.Routing;
using Petals.Transport;
using Petals.Transport.Multiplexing;
using Petals.Transport.Tcp;

namespace Petals.Benchmarks.Chaos;

/// <summary>
/// The swarm of a chaos run, as real processes on 127.0.0.1: a bootstrap node (<c>petals dht</c>) and one
/// <c>petals serve --initial-peers</c> per span. A server is killed with SIGKILL and restarted as a new process (a new
/// peer id) on the same span, so that the swarm never runs dry however many kills a run makes.
/// </summary>
/// <remarks>Not thread-safe: one driver calls it.</remarks>
internal sealed class ChaosSwarm : IAsyncDisposable
{
    private readonly ChaosOptions _options;
    private readonly string _modelPath;
    private readonly int _blockCount;
    private readonly TextWriter _log;
    private readonly List<ServerProcess> _ended = [];
    private ServerProcess? _bootstrap;

    private ChaosSwarm(ChaosOptions options, int blockCount, TextWriter log)
    {
        _options = options;
        _modelPath = Path.GetFullPath(options.Model);
        _blockCount = blockCount;
        _log = log;
        Servers = [.. options.Spans.Select((span, i) => new ChaosServer(i + 1, span))];
    }

    /// <summary>The address of the bootstrap DHT node, with its peer id.</summary>
    public PeerAddress BootstrapAddress { get; private set; }

    /// <summary>One entry per span, in the order of <see cref="ChaosOptions.Spans"/>.</summary>
    public IReadOnlyList<ChaosServer> Servers { get; }

    /// <summary>The spans of the servers whose process runs now.</summary>
    public IEnumerable<BlockRange> LiveSpans => Servers.Where(s => s.Process is not null).Select(s => s.Span);

    /// <summary>Starts the bootstrap node, then every server, and waits until each is listening.</summary>
    /// <exception cref="TimeoutException">When a process is not ready within <see cref="ChaosOptions.StartupTimeout"/>; the message has its last output.</exception>
    /// <exception cref="InvalidOperationException">When a process exits before it is ready; the message has its last output.</exception>
    public static async Task<ChaosSwarm> StartAsync(ChaosOptions options, int blockCount, TextWriter log, CancellationToken cancellationToken)
    {
        var swarm = new ChaosSwarm(options, blockCount, log);
        try
        {
            swarm._bootstrap = ServerProcess.Start("bootstrap", "dht", "dht ", ["--host", "127.0.0.1", "--port", "0"]);
            swarm.BootstrapAddress = await swarm._bootstrap.WaitUntilListeningAsync(options.StartupTimeout, cancellationToken).ConfigureAwait(false);
            await log.WriteLineAsync($"bootstrap DHT node at {swarm.BootstrapAddress} (pid {swarm._bootstrap.ProcessId})").ConfigureAwait(false);
            foreach (var server in swarm.Servers)
            {
                swarm.Launch(server);
            }

            foreach (var server in swarm.Servers)
            {
                await swarm.WaitUntilListeningAsync(server, cancellationToken).ConfigureAwait(false);
            }

            return swarm;
        }
        catch
        {
            await swarm.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The server whose running process has <paramref name="peerId"/>, or null.</summary>
    public ChaosServer? FindRunning(string peerId) => Servers.FirstOrDefault(s => s.Process is not null && s.PeerId == peerId);

    /// <summary>
    /// Waits until every server's process is listening and announced online as the client sees it: refreshes
    /// <paramref name="sequence"/> until its online servers hold every current peer id.
    /// </summary>
    /// <returns>How long it waited.</returns>
    /// <exception cref="TimeoutException">After <see cref="ChaosOptions.StartupTimeout"/>, naming the servers still missing.</exception>
    /// <exception cref="InvalidOperationException">When a server process exited; the message has its last output.</exception>
    public async Task<TimeSpan> WaitUntilAllOnlineAsync(SwarmSequenceManager sequence, CancellationToken cancellationToken)
    {
        var waited = Stopwatch.StartNew();
        foreach (var server in Servers)
        {
            if (server.Process is null)
            {
                throw new InvalidOperationException($"{server.Name} has no process: restart it before waiting for it.");
            }

            await WaitUntilListeningAsync(server, cancellationToken).ConfigureAwait(false);
        }

        while (true)
        {
            await sequence.RefreshAsync(cancellationToken).ConfigureAwait(false);
            var online = sequence.OnlineServers.Select(s => s.PeerId).ToHashSet(StringComparer.Ordinal);
            var missing = Servers.Where(s => !online.Contains(s.PeerId!)).ToArray();
            if (missing.Length == 0)
            {
                foreach (var server in Servers)
                {
                    server.OnlineAfter ??= server.Launched!.Elapsed;
                }

                return waited.Elapsed;
            }

            if (Servers.FirstOrDefault(s => s.Process!.ExitCode is not null) is { } exited)
            {
                throw new InvalidOperationException(exited.Process!.Describe("exited while the swarm waited for it"));
            }

            if (waited.Elapsed > _options.StartupTimeout)
            {
                throw new TimeoutException(string.Create(CultureInfo.InvariantCulture,
                    $"{string.Join(", ", missing.Select(s => s.Name))} not announced online after {_options.StartupTimeout.TotalSeconds:0} s."));
            }

            await Task.Delay(TimeSpan.FromMilliseconds(25), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Runs a short inference session (8 tokens of prefill, 3 decode steps) through every running server that has not had
    /// one yet, each in a chain of its whole span and the other running servers for the rest: a replacement's first
    /// steps are then not its runtime's first (JIT, first cache), as in a swarm whose servers have been up for a while.
    /// </summary>
    /// <returns>How many servers were warmed up.</returns>
    /// <exception cref="InvalidOperationException">When a server is not in <paramref name="sequence"/>'s view (wait for it first).</exception>
    public async Task<int> WarmUpAsync(SwarmSequenceManager sequence, ModelConfig config, CancellationToken cancellationToken)
    {
        var running = Servers.Where(s => s.Process is not null).Select(s => s.PeerId).ToHashSet(StringComparer.Ordinal);
        var online = sequence.OnlineServers.Where(s => running.Contains(s.PeerId)).ToArray();
        var warmed = 0;
        foreach (var server in Servers.Where(s => s.Process is not null && !s.WarmedUp))
        {
            var self = online.FirstOrDefault(s => s.PeerId == server.PeerId)
                ?? throw new InvalidOperationException($"{server.Name} (peer {server.PeerId}) is not online in the client's view.");
            var segments = new List<(ServerInfo, BlockRange)>();
            Tile(online, self, 0, self.Span.Start, segments);
            segments.Add((self, self.Span));
            Tile(online, self, self.Span.End, _blockCount, segments);
            await using var chain = await PinnedChain.ConnectAsync(new TcpTransport().WithMultiplexing(), [.. segments.Select(s => new RouteSegment(s.Item1, s.Item2))], config, sequence.ModelId, new RemoteSequenceOptions(), cancellationToken).ConfigureAwait(false);
            await using var session = await chain.Blocks.OpenSessionAsync(1, 16, cancellationToken).ConfigureAwait(false);
            var hidden = new float[8 * config.HiddenSize];
            for (var i = 0; i < hidden.Length; i++)
            {
                hidden[i] = 0.1f * MathF.Sin(i);
            }

            await session.ForwardAsync(hidden, 8, cancellationToken).ConfigureAwait(false);
            for (var step = 0; step < 3; step++)
            {
                await session.ForwardAsync(hidden.AsMemory(0, config.HiddenSize), 1, cancellationToken).ConfigureAwait(false);
            }

            server.WarmedUp = true;
            warmed++;
        }

        return warmed;
    }

    /// <summary>
    /// Kills <paramref name="server"/>'s process with SIGKILL and checks that the servers still running cover every block.
    /// The server has no process until <see cref="Restart"/>.
    /// </summary>
    /// <param name="server">The server to kill.</param>
    /// <param name="afterTokens">Tokens generated so far, for the record.</param>
    /// <param name="chainSegments">The blocks the active chain runs on the server, for the record (each fails, and is recovered, separately).</param>
    /// <param name="time">The clock the kill time is read from (the one the client's recovery times come from).</param>
    /// <returns>The kill: which process, and when the signal was sent (read just before sending it).</returns>
    /// <exception cref="InvalidOperationException">When the server has no process, or its loss leaves a block uncovered (checked before the kill).</exception>
    public ChaosKill Kill(ChaosServer server, int afterTokens, IReadOnlyList<BlockRange> chainSegments, TimeProvider time)
    {
        var process = server.Process ?? throw new InvalidOperationException($"{server.Name} has no process to kill.");
        if (ChaosOptions.FirstUncovered(Servers.Where(s => s != server && s.Process is not null).Select(s => s.Span), _blockCount) is { } hole)
        {
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                $"killing {server.Name} would leave block {hole} uncovered (running: {string.Join(", ", LiveSpans)})."));
        }

        var kill = new ChaosKill(afterTokens, server.Index, server.Span, server.PeerId!, process.ProcessId, time.GetUtcNow(), chainSegments);
        process.KillHard();
        server.Process = null;
        server.Kills++;
        _ended.Add(process);
        return kill;
    }

    /// <summary>Starts a new process for <paramref name="server"/> (same span, new peer id); it may be waited for with <see cref="WaitUntilAllOnlineAsync"/>.</summary>
    /// <exception cref="InvalidOperationException">When the server still has a running process.</exception>
    public void Restart(ChaosServer server)
    {
        if (server.Process is not null)
        {
            throw new InvalidOperationException($"{server.Name} still runs (pid {server.Process.ProcessId}).");
        }

        Launch(server);
    }

    /// <summary>Checks that each killed process has ended (a SIGKILL cannot be ignored, but it is delivered asynchronously).</summary>
    /// <exception cref="TimeoutException">When one still runs after <paramref name="timeout"/>.</exception>
    public async Task WaitForKilledAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        foreach (var process in _ended)
        {
            await process.WaitForExitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Stops every running process (SIGTERM, then SIGKILL after a grace period) and releases the killed ones.</summary>
    public async ValueTask DisposeAsync()
    {
        var running = Servers.Where(s => s.Process is not null).Select(s => s.Process!).ToList();
        foreach (var server in Servers)
        {
            server.Process = null;
        }

        await Task.WhenAll(running.Select(p => p.StopAsync(TimeSpan.FromSeconds(10)))).ConfigureAwait(false);
        foreach (var process in running.Concat(_ended))
        {
            await process.DisposeAsync().ConfigureAwait(false);
        }

        _ended.Clear();
        if (_bootstrap is not null)
        {
            await _bootstrap.DisposeAsync().ConfigureAwait(false);
            _bootstrap = null;
        }
    }

    /// <summary>Covers blocks [<paramref name="from"/>, <paramref name="to"/>) with segments of <paramref name="online"/> servers other than <paramref name="self"/>, each reaching as far as it can.</summary>
    private static void Tile(ServerInfo[] online, ServerInfo self, int from, int to, List<(ServerInfo, BlockRange)> segments)
    {
        for (var at = from; at < to;)
        {
            var next = online.Where(s => s.PeerId != self.PeerId && s.Span.Start <= at && s.Span.End > at).MaxBy(s => s.Span.End)
                ?? throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"no running server but {self.PeerId} serves block {at}."));
            var end = Math.Min(next.Span.End, to);
            segments.Add((next, new BlockRange(at, end)));
            at = end;
        }
    }

    private void Launch(ChaosServer server)
    {
        server.WarmedUp = false;
        server.Starts++;
        server.Launched = Stopwatch.StartNew();
        server.OnlineAfter = null;
        server.Process = ServerProcess.Start(
            string.Create(CultureInfo.InvariantCulture, $"{server.Name} start {server.Starts}"),
            [
                "--model", _modelPath, "--blocks", server.Span.ToString(), "--host", "127.0.0.1", "--port", "0",
                "--initial-peers", BootstrapAddress.ToString(),
                "--threads", _options.ServerThreads.ToString(CultureInfo.InvariantCulture),
                "--announce-interval", _options.AnnounceIntervalSeconds.ToString(CultureInfo.InvariantCulture),
            ]);
    }

    private async Task WaitUntilListeningAsync(ChaosServer server, CancellationToken cancellationToken)
    {
        var process = server.Process!;
        server.Address = await process.WaitUntilListeningAsync(_options.StartupTimeout, cancellationToken).ConfigureAwait(false);
        if (process.DhtAddress?.PeerId is not { Length: > 0 } peerId)
        {
            throw new InvalidOperationException(process.Describe("listens but printed no 'dht tls://ID@HOST:PORT' line: is discovery on?"));
        }

        if (server.PeerId != peerId)
        {
            server.PeerId = peerId;
            await _log.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"{server.Name}: blocks {server.Span} at {server.Address}, peer {peerId} (pid {process.ProcessId}, start {server.Starts})")).ConfigureAwait(false);
        }
    }
}

/// <summary>One server slot of a chaos run: a span, and the process that serves it now (none between a kill and its restart).</summary>
/// <param name="index">The slot's number, from 1.</param>
/// <param name="span">The blocks it serves.</param>
internal sealed class ChaosServer(int index, BlockRange span)
{
    /// <summary>The slot's number, from 1.</summary>
    public int Index { get; } = index;

    /// <summary>The blocks it serves.</summary>
    public BlockRange Span { get; } = span;

    /// <summary>A name for messages, e.g. <c>server 3 (2:5)</c>.</summary>
    public string Name => string.Create(CultureInfo.InvariantCulture, $"server {Index} ({Span})");

    /// <summary>The process serving the span now, or null between a kill and its restart.</summary>
    public ServerProcess? Process { get; set; }

    /// <summary>The peer id of the last process that printed its DHT address (stays the killed one's until the restart's is known).</summary>
    public string? PeerId { get; set; }

    /// <summary>Where the last process listened.</summary>
    public PeerAddress? Address { get; set; }

    /// <summary>How many processes were started for the slot.</summary>
    public int Starts { get; set; }

    /// <summary>How many of them were killed.</summary>
    public int Kills { get; set; }

    /// <summary>Runs since the current process was launched.</summary>
    public Stopwatch? Launched { get; set; }

    /// <summary>Whether the current process has run an inference session (<see cref="ChaosSwarm.WarmUpAsync"/>).</summary>
    public bool WarmedUp { get; set; }

    /// <summary>The time from launch to being online in the client's view, once seen.</summary>
    public TimeSpan? OnlineAfter { get; set; }
}

/// <summary>One SIGKILL of a chaos run.</summary>
/// <param name="AfterTokens">Tokens generated when the server was killed.</param>
/// <param name="Server">The slot's number.</param>
/// <param name="Span">The blocks the killed server served.</param>
/// <param name="PeerId">The killed server's peer id.</param>
/// <param name="ProcessId">The killed process's id.</param>
/// <param name="KilledAt">When the signal was sent.</param>
/// <param name="ChainSegments">The blocks the active chain ran on the killed server (usually one segment; two when a recovery had given it a second).</param>
internal sealed record ChaosKill(int AfterTokens, int Server, BlockRange Span, string PeerId, int ProcessId, DateTimeOffset KilledAt, IReadOnlyList<BlockRange> ChainSegments);
