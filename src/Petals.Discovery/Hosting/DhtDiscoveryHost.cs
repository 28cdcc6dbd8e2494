using Microsoft.Extensions.Logging;
using Petals.Models;
using Petals.Transport;

namespace Petals.Discovery;

/// <summary>
/// The <see cref="IPeerDiscovery"/> that <c>UseDhtDiscovery(…)</c> registers: owns a <see cref="DhtNode"/> and its
/// identity, starts and bootstraps it on first use (so the DI container needs no async factory), then delegates to a
/// <see cref="DhtPeerDiscovery"/>. A bootstrap that no initial peer answered fails that call and is tried again on the
/// next one (a server keeps serving and its announcer retries each period). Thread-safe.
/// </summary>
/// <remarks>Log event ids 3400-3409.</remarks>
internal sealed partial class DhtDiscoveryHost : IPeerDiscovery, IAsyncDisposable
{
    private readonly DhtDiscoveryOptions _options;
    private readonly ITransport _transport;
    private readonly ILogger _logger;
    private readonly PeerIdentity _identity;
    private readonly DhtPeerDiscovery _discovery;
    private readonly SemaphoreSlim _starting = new(1, 1);
    private volatile bool _ready;
    private bool _started;
    private int _disposed;

    public DhtDiscoveryHost(DhtDiscoveryOptions options, ITransport transport, TimeProvider timeProvider, ILogger logger)
    {
        _options = options;
        _transport = transport;
        _logger = logger;
        _identity = options.IdentityPath is { } path ? PeerIdentity.LoadOrCreate(path) : PeerIdentity.Generate();
        Node = new DhtNode(_identity, options.Node, timeProvider);
        _discovery = new DhtPeerDiscovery(Node, timeProvider);
    }

    /// <summary>The node (started on first use).</summary>
    public DhtNode Node { get; }

    public string LocalPeerId => _discovery.LocalPeerId;

    public async Task<int> AnnounceAsync(string modelId, int blockCount, ServerInfo info, TimeSpan timeToLive, CancellationToken cancellationToken = default)
    {
        await EnsureStartedAsync(cancellationToken).ConfigureAwait(false);
        return await _discovery.AnnounceAsync(modelId, blockCount, info, timeToLive, cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<BlockServers>> GetServersAsync(string modelId, BlockRange blocks, CancellationToken cancellationToken = default)
    {
        await EnsureStartedAsync(cancellationToken).ConfigureAwait(false);
        return await _discovery.GetServersAsync(modelId, blocks, cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<SwarmModelInfo>> GetModelsAsync(CancellationToken cancellationToken = default)
    {
        await EnsureStartedAsync(cancellationToken).ConfigureAwait(false);
        return await _discovery.GetModelsAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Starts the node (once) and bootstraps it from the initial peers (until one answers).</summary>
    /// <exception cref="InvalidOperationException">None of the initial peers answered.</exception>
    public async Task EnsureStartedAsync(CancellationToken cancellationToken = default)
    {
        if (_ready)
        {
            return;
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await _starting.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_ready)
            {
                return;
            }

            if (!_started)
            {
                if (_options.ClientMode)
                {
                    await Node.StartAsync(_transport, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await Node.StartAsync(_transport, PeerAddress.Parse(_options.ListenAddress), cancellationToken).ConfigureAwait(false);
                }

                _started = true;
                Log.Started(_logger, Node.Id.ToString(), Node.LocalAddress);
            }

            if (!_options.NewSwarm)
            {
                var peers = _options.InitialPeers.Select(PeerAddress.Parse).ToArray();
                var joined = await Node.JoinAsync(peers, cancellationToken).ConfigureAwait(false);
                if (joined.Answered == 0)
                {
                    throw new InvalidOperationException($"None of the initial DHT peers answered: {string.Join("; ", joined.Failures)}.");
                }

                Log.Bootstrapped(_logger, joined.Answered, peers.Length, Node.Routing.Count, joined.ToString());
            }

            _ready = true;
        }
        finally
        {
            _starting.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await Node.DisposeAsync().ConfigureAwait(false);
        _identity.Dispose();
    }

    public override string ToString() => $"DHT discovery through {Node}";

    private static partial class Log
    {
        [LoggerMessage(3400, LogLevel.Information, "DHT node {NodeId} listening on {Address}")]
        public static partial void Started(ILogger logger, string nodeId, PeerAddress address);

        [LoggerMessage(3401, LogLevel.Information, "DHT node bootstrapped: {Answered} of {Peers} initial peers answered, {Known} nodes known ({Outcome})")]
        public static partial void Bootstrapped(ILogger logger, int answered, int peers, int known, string outcome);
    }
}
