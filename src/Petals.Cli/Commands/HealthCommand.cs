using System.CommandLine;
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Petals.Discovery;

namespace Petals.Cli.Commands;

/// <summary><c>petals health</c>: the swarm health monitor, a web page and a JSON state over the swarm's DHT, until Ctrl-C / SIGTERM.</summary>
internal static class HealthCommand
{
    public static Command Create(CliContext context)
    {
        var initialPeers = ClientDiscovery.InitialPeersOption(required: true);
        var host = new Option<string>("--host") { Description = "The address the web page listens on.", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "The HTTP port; 0 picks a free one.", DefaultValueFactory = _ => 8080 };
        var refresh = new Option<double>("--refresh") { Description = "Seconds between two reads of the swarm (and two fetches of the page), 0.1 to 3600.", DefaultValueFactory = _ => 5 };
        var insecure = TransportSecurity.Insecure();
        var noMultiplex = TransportSecurity.NoMultiplex();
        var command = new Command("health", "Run the swarm health monitor: a web page with, per model, a bar of its blocks coloured by coverage and a table of servers, refreshed live; GET /api/v1/state gives the same data as JSON; prints `listening http://HOST:PORT`.")
        {
            initialPeers, host, port, refresh, insecure, noMultiplex,
        };

        command.SetAction((parse, cancellationToken) => context.RunAsync(async ct =>
        {
            var portValue = parse.GetValue(port);
            if (portValue is < 0 or > 65535)
            {
                throw new ArgumentException($"--port must be 0 to 65535; it is {portValue}.");
            }

            var seconds = parse.GetValue(refresh);
            if (!double.IsFinite(seconds) || seconds < 0.1 || seconds > 3600)
            {
                throw new ArgumentException($"--refresh must be 0.1 to 3600 seconds; it is {seconds.ToString(CultureInfo.InvariantCulture)}.");
            }

            var hostValue = parse.GetValue(host)!;
            if (string.IsNullOrWhiteSpace(hostValue) || Uri.CheckHostName(hostValue) == UriHostNameType.Unknown)
            {
                throw new ArgumentException($"--host: '{hostValue}' is not a host name or IP address.");
            }

            TransportSecurity.Warn(context, parse.GetValue(insecure));
            await using var swarm = await ClientDiscovery.JoinAsync(parse.GetValue(initialPeers)!, parse.GetValue(insecure), !parse.GetValue(noMultiplex), ct).ConfigureAwait(false);
            foreach (var met in swarm.Met)
            {
                context.Info(met);
            }

            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.Logging.AddProvider(new CliLoggerProvider(context));
            var urlHost = hostValue.Contains(':', StringComparison.Ordinal) ? $"[{hostValue}]" : hostValue;
            builder.WebHost.UseUrls($"http://{urlHost}:{portValue.ToString(CultureInfo.InvariantCulture)}");
            builder.Services.AddSingleton(swarm.Discovery);
            builder.Services.AddPetalsHealthMonitor(o => o.RefreshInterval = TimeSpan.FromSeconds(seconds));
            var app = builder.Build();
            await using (app.ConfigureAwait(false))
            {
                app.MapPetalsHealthMonitor();
                await app.StartAsync(ct).ConfigureAwait(false);
                var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
                await context.Output.WriteLineAsync($"listening {address}").ConfigureAwait(false);
                await context.Output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                try
                {
                    await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    // Ctrl-C, SIGTERM or the caller's token: stop cleanly below.
                }

                await app.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>Warnings of the web host and the monitor on the CLI's error output.</summary>
    private sealed class CliLoggerProvider(CliContext context) : ILoggerProvider
    {
        private readonly CliLoggerFactory _factory = new(context);

        public ILogger CreateLogger(string categoryName) => _factory.CreateLogger(categoryName);

        public void Dispose() => _factory.Dispose();
    }
}
