using System.CommandLine;
using Petals.Generation;

namespace Petals.Cli.Commands;

/// <summary>
/// Where a command's blocks run: in this process (neither option), on servers given by <c>--peers</c>, or on servers
/// found in the swarm through <c>--initial-peers</c>; with the transport options of a client. Shared by the commands
/// that score or train through any of them (<c>finetune</c>, <c>perplexity</c>).
/// </summary>
internal sealed class BlocksSourceOptions
{
    public Option<string?> Peers { get; } = SwarmOptions.Peers();

    public Option<string> WireCodec { get; } = SwarmOptions.WireCodec();

    public Option<string?> InitialPeers { get; } = ClientDiscovery.InitialPeersOption();

    public Option<string?> ModelId { get; } = new("--model-id") { Description = "With --initial-peers: the model id the servers announce (default: computed from the model)." };

    public Option<bool> Insecure { get; } = TransportSecurity.Insecure();

    public Option<bool> NoMultiplex { get; } = TransportSecurity.NoMultiplex();

    /// <summary>The options, to add to a command.</summary>
    public IEnumerable<Option> All => [Peers, WireCodec, InitialPeers, ModelId, Insecure, NoMultiplex];

    /// <summary>The checks of the options' combinations.</summary>
    public void Validate(System.CommandLine.Parsing.CommandResult result)
    {
        if (result.GetResult(Peers) is not null && result.GetResult(InitialPeers) is not null)
        {
            result.AddError("--peers and --initial-peers are exclusive: name the servers, or the swarm's DHT nodes to find them through.");
        }

        if (result.GetResult(ModelId) is not null && result.GetResult(InitialPeers) is null)
        {
            result.AddError("--model-id needs --initial-peers (it names the model in the swarm's announcements).");
        }
    }

    /// <summary>Whether the blocks run remotely.</summary>
    public bool IsRemote(ParseResult parse) => parse.GetValue(Peers) is not null || parse.GetValue(InitialPeers) is not null;

    /// <summary>
    /// Loads the model of <paramref name="modelPath"/> with its blocks where the options say: <paramref name="loadLocal"/>
    /// without peers, else the head here and the blocks on the servers.
    /// </summary>
    public async Task<Opened> OpenAsync(CliContext context, ParseResult parse, string modelPath, Func<CausalLanguageModel> loadLocal, CancellationToken ct)
    {
        var plain = parse.GetValue(Insecure);
        TransportSecurity.Warn(context, plain);
        var peerList = parse.GetValue(Peers);
        var dhtPeers = parse.GetValue(InitialPeers);
        if (peerList is null && dhtPeers is null)
        {
            return new Opened(null, null, loadLocal());
        }

        ClientDiscovery? swarm = null;
        ClientHost? client = null;
        try
        {
            if (dhtPeers is not null)
            {
                swarm = await ClientDiscovery.JoinAsync(dhtPeers, plain, !parse.GetValue(NoMultiplex), ct).ConfigureAwait(false);
                client = swarm.CreateClient(modelPath, parse.GetValue(ModelId), parse.GetValue(WireCodec), [], []);
            }
            else
            {
                client = SwarmOptions.CreateClient(modelPath, peerList!, parse.GetValue(WireCodec), plain, 0, !parse.GetValue(NoMultiplex));
            }

            return new Opened(swarm, client, await client.ConnectAsync(ct).ConfigureAwait(false));
        }
        catch
        {
            if (client is not null)
            {
                await client.DisposeAsync().ConfigureAwait(false);
            }

            if (swarm is not null)
            {
                await swarm.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    /// <summary>A loaded model and what reaches its servers; disposed model first, then client, then the DHT node.</summary>
    internal sealed class Opened(ClientDiscovery? swarm, ClientHost? client, CausalLanguageModel model) : IAsyncDisposable
    {
        public CausalLanguageModel Model { get; } = model;

        public bool IsRemote => client is not null;

        public async ValueTask DisposeAsync()
        {
            Model.Dispose();
            if (client is not null)
            {
                await client.DisposeAsync().ConfigureAwait(false);
            }

            if (swarm is not null)
            {
                await swarm.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
