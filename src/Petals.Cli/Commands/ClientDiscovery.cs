using System.CommandLine;
using Petals.Discovery;
using Petals.Transport;
using Petals.Transport.Tcp;

namespace Petals.Cli.Commands;

/// <summary>
/// How client commands (<c>generate --initial-peers</c>, <c>status</c>) join the swarm's DHT: a DHT node with a fresh
/// identity, bootstrapped from the initial peers, read through <see cref="DhtPeerDiscovery"/>.
/// </summary>
internal sealed class ClientDiscovery : IAsyncDisposable
{
    private readonly bool _multiplex;

    private ClientDiscovery(PeerIdentity identity, DhtNode node, IReadOnlyList<string> met, bool multiplex)
    {
        Identity = identity;
        Node = node;
        Discovery = new DhtPeerDiscovery(node);
        Met = met;
        _multiplex = multiplex;
    }

    public PeerIdentity Identity { get; }

    public DhtNode Node { get; }

    public IPeerDiscovery Discovery { get; }

    /// <summary>For each initial peer given without an id over TLS: <c>connected to HOST:PORT as tls://ID@HOST:PORT</c>.</summary>
    public IReadOnlyList<string> Met { get; }

    public static Option<string?> InitialPeersOption(bool required = false) =>
        new("--initial-peers")
        {
            Description = "DHT nodes of the swarm to join (e.g. the address `petals dht` prints), comma-separated: tls://id@host:port (pinned), host:port (TLS, any key; the key met is printed), or tcp://host:port (plain, with --insecure).",
            Required = required,
        };

    /// <summary>Parses a comma-separated list of DHT addresses; bare <c>host:port</c> is TLS, or plain TCP with <paramref name="insecure"/>.</summary>
    /// <exception cref="ArgumentException">When the list is empty or an entry is not a TLS address (or, with <paramref name="insecure"/>, a TCP one).</exception>
    public static PeerAddress[] ParseInitialPeers(string text, bool insecure = false)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0)
        {
            throw new ArgumentException("--initial-peers names no DHT node.");
        }

        return [.. parts.Select(part =>
        {
            if (TransportSecurity.ParseAddress("--initial-peers", part, insecure) is not { } address)
            {
                throw new ArgumentException($"--initial-peers: '{part}' is not a DHT address (host:port, tls://id@host:port or tcp://host:port).");
            }

            try
            {
                _ = address.Port;
            }
            catch (FormatException e)
            {
                throw new ArgumentException($"--initial-peers: '{part}' has no valid port ({e.Message}).", e);
            }

            return address;
        })];
    }

    /// <summary>Starts a DHT node with a fresh identity and bootstraps it from <paramref name="initialPeers"/>.</summary>
    /// <exception cref="ArgumentException">When the list is malformed.</exception>
    /// <exception cref="TransportException">When none of the initial peers answers (exit code 3); the message names them.</exception>
    public static Task<ClientDiscovery> JoinAsync(string initialPeers, CancellationToken cancellationToken) =>
        JoinAsync(initialPeers, insecure: false, multiplex: true, cancellationToken);

    /// <summary>
    /// Starts a DHT node with a fresh identity and bootstraps it from <paramref name="initialPeers"/>, whose bare
    /// <c>host:port</c> entries are TLS (trust on first use, see <see cref="Met"/>) or, with <paramref name="insecure"/>, plain TCP.
    /// </summary>
    /// <exception cref="ArgumentException">When the list is malformed.</exception>
    /// <exception cref="TransportException">When none of the initial peers answers (exit code 3); the message names them.</exception>
    public static async Task<ClientDiscovery> JoinAsync(string initialPeers, bool insecure, bool multiplex, CancellationToken cancellationToken)
    {
        var peers = ParseInitialPeers(initialPeers, insecure);
        var identity = PeerIdentity.Generate();
        var node = new DhtNode(identity);
        try
        {
            await StartClientNodeAsync(node, multiplex, cancellationToken).ConfigureAwait(false);
            var joined = await DhtNodeStarter.JoinAsync(node, peers, cancellationToken).ConfigureAwait(false);
            if (joined.Answered == 0)
            {
                throw new TransportException(
                    TransportErrorKind.ConnectionRefused,
                    $"None of the initial peers answered ({string.Join("; ", joined.Failures)}): is a DHT node (petals dht, or a server) running there?");
            }

            var met = joined.Peers
                .Select(p => p.Id is { } id ? TransportSecurity.MetLine(p.Address, id.ToString()) : null)
                .OfType<string>()
                .ToArray();
            return new ClientDiscovery(identity, node, met, multiplex);
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            identity.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The client of <paramref name="modelPath"/> that finds servers through this node: its route of least latency over
    /// the announced servers, recovering from failures, within the allow and block lists.
    /// </summary>
    /// <param name="modelPath">The model file or directory (only its embeddings, final norm, head and tokenizer are read).</param>
    /// <param name="modelId">The model id the servers announce; null computes it from the model.</param>
    /// <param name="codec">The wire codec name (fp32, fp16, bf16).</param>
    /// <param name="allowedPeers">The only peers to route through (empty: any).</param>
    /// <param name="blockedPeers">Peers never to route through.</param>
    /// <param name="verifyRate">The probability that a span's answer to a step is spot-checked (0: never).</param>
    /// <param name="requiredQuantization">The only weight quantization to route through (null: any).</param>
    /// <exception cref="FileNotFoundException">When the model does not exist.</exception>
    public ClientHost CreateClient(string modelPath, string? modelId, string? codec, IReadOnlyCollection<string> allowedPeers, IReadOnlyCollection<string> blockedPeers, double verifyRate = 0, string? requiredQuantization = null)
    {
        if (!File.Exists(modelPath) && !Directory.Exists(modelPath))
        {
            throw new FileNotFoundException($"Model '{modelPath}' does not exist.", modelPath);
        }

        return ClientHost.Create(
            o =>
            {
                o.ModelPath = modelPath;
                o.ModelId = modelId;
                o.Sequence.Codec = SwarmOptions.ParseCodec(codec);
                o.Swarm.Router.AllowedPeers.UnionWith(allowedPeers);
                o.Swarm.Router.BlockedPeers.UnionWith(blockedPeers);
                o.Sequence.Verification.Rate = verifyRate;
                o.Sequence.RequiredQuantization = requiredQuantization;
            },
            Discovery,
            _multiplex);
    }

    /// <summary>The peer ids of a comma-separated list (blanks dropped); empty for null.</summary>
    /// <param name="list">The option's value.</param>
    /// <returns>The peer ids, in order, without duplicates.</returns>
    public static IReadOnlyList<string> ParsePeerIds(string? list) =>
        list is null ? [] : [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct(StringComparer.Ordinal)];

    public async ValueTask DisposeAsync()
    {
        await Node.DisposeAsync().ConfigureAwait(false);
        Identity.Dispose();
    }

    /// <summary>
    /// A client's node runs in client mode: it does not listen, its requests carry no address, and servers never add it
    /// to their routing tables (a client behind NAT or with a short life would only be a dead entry there).
    /// </summary>
    private static Task StartClientNodeAsync(DhtNode node, bool multiplex, CancellationToken cancellationToken) =>
        node.StartAsync(TransportSecurity.Transport(multiplex: multiplex), cancellationToken);
}
