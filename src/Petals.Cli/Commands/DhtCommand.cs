using System.CommandLine;
using Petals.Discovery;
using Petals.Transport;

namespace Petals.Cli.Commands;

/// <summary><c>petals dht</c>: runs a DHT node (a swarm's bootstrap node) until Ctrl-C / SIGTERM.</summary>
internal static class DhtCommand
{
    public static Command Create(CliContext context)
    {
        var host = new Option<string>("--host") { Description = "The address to listen on.", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "The TCP port; 0 picks a free one.", DefaultValueFactory = _ => 0 };
        var identity = DhtNodeStarter.Identity();
        var insecure = TransportSecurity.Insecure();
        var noMultiplex = TransportSecurity.NoMultiplex();
        var initialPeers = ClientDiscovery.InitialPeersOption();
        var stopWhenInputCloses = new Option<bool>("--stop-when-input-closes")
        {
            Description = "Stop (as on SIGTERM) when standard input reaches its end: a parent holding the other end of a pipe takes the node down with it.",
        };

        var maxConnections = new Option<int>("--max-connections") { Description = "The most requests (one connection each) served at once; more wait to be accepted.", DefaultValueFactory = _ => DhtNodeOptions.Default.MaxConcurrentRequests };
        var maxPerAddress = new Option<int>("--max-connections-per-address") { Description = "The most requests served at once from one IP address; more are refused at once.", DefaultValueFactory = _ => DhtNodeOptions.Default.MaxRequestsPerAddress };
        var command = new Command("dht", "Run a DHT node that servers and clients join with --initial-peers; prints its address (dht tls://<id>@host:port; tcp:// with --insecure).")
        {
            host, port, identity, initialPeers, stopWhenInputCloses, insecure, noMultiplex, maxConnections, maxPerAddress,
        };

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            TransportSecurity.Warn(context, parse.GetValue(insecure));
            var peers = parse.GetValue(initialPeers) is { } text ? ClientDiscovery.ParseInitialPeers(text, parse.GetValue(insecure)) : [];
            using var key = DhtNodeStarter.LoadIdentity(parse.GetValue(identity));
            using var tls = TransportSecurity.TlsIdentity(key, parse.GetValue(insecure));
            var options = DhtNodeOptions.Default with { MaxConcurrentRequests = parse.GetValue(maxConnections), MaxRequestsPerAddress = parse.GetValue(maxPerAddress) };
            try
            {
                options.Validate();
            }
            catch (ArgumentOutOfRangeException e)
            {
                throw new ArgumentException($"--max-connections and --max-connections-per-address must be at least 1: {e.Message}", e);
            }

            var node = new DhtNode(key, options);
            await using (node.ConfigureAwait(false))
            {
                // SIGTERM / Ctrl-C cancel ct (PetalsCommand.RunAsync), so `stop` ends the wait below and the node stops cleanly.
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
                if (await DhtNodeStarter.StartAsync(node, tls, !parse.GetValue(noMultiplex), parse.GetValue(host)!, parse.GetValue(port), peers, line => context.Info(line), ct).ConfigureAwait(false) is { } failure)
                {
                    await context.Error.WriteLineAsync($"error: {failure}").ConfigureAwait(false);
                    return CliContext.SwarmError;
                }

                await context.Output.WriteLineAsync($"dht {DhtNodeStarter.AddressOf(node)}").ConfigureAwait(false);
                await context.Output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                context.Info($"DHT node {node.Id} listening on {node.LocalAddress}; {node.Routing.Count} nodes known");
                if (System.Net.IPAddress.TryParse(parse.GetValue(host), out var ip) && (ip.Equals(System.Net.IPAddress.Any) || ip.Equals(System.Net.IPAddress.IPv6Any)))
                {
                    context.Info($"warning: listening on the wildcard host {parse.GetValue(host)}, which is also the address this node gives other nodes and they cannot connect to: give other nodes an address with this machine's reachable host as --initial-peers");
                }

                if (parse.GetValue(stopWhenInputCloses))
                {
                    _ = ServeCommand.StopWhenInputClosesAsync(stop);
                }

                try
                {
                    await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    // Ctrl-C, SIGTERM, the end of the input or the caller's token: stop cleanly below.
                }

                await node.StopAsync().ConfigureAwait(false);
                using var buffer = new MemoryStream();
                using (var w = new System.Text.Json.Utf8JsonWriter(buffer, CliContext.JsonOptions))
                {
                    w.WriteStartObject();
                    w.WriteString("node_id", node.Id.ToString());
                    w.WriteNumber("requests_served", node.RequestsServed);
                    w.WriteNumber("requests_refused", node.RequestsRefused);
                    w.WriteNumber("records_stored", node.Storage.RecordCount);
                    w.WriteNumber("keys_stored", node.Storage.KeyCount);
                    w.WriteNumber("known_nodes", node.Routing.Count);
                    w.WriteEndObject();
                }

                await context.Output.WriteLineAsync("stats " + System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length)).ConfigureAwait(false);
                await context.Output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                return 0;
            }
        }, cancellationToken));
        return command;
    }
}
