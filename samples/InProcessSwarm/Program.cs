// A whole swarm in one process: three block servers and a client, each in its own container, over the in-memory
// transport and an in-memory discovery. The servers announce their spans; the client finds them, routes the model over
// them and generates. One server is stopped halfway: the client's session recovers on the remaining ones.
// Usage: dotnet run --project samples/InProcessSwarm -- [MODEL.gguf|HF-DIR] [PROMPT]
using System.Reflection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Petals.Client;
using Petals.Generation;
using Petals.Hosting;
using Petals.Models;
using Petals.Testing.Discovery;
using Petals.Testing.Transport;

var model = args.Length > 0 ? args[0] : Assembly.GetEntryAssembly()!.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "DefaultModel").Value!;
var prompt = args.Length > 1 ? args[1] : "Once upon a time";
var network = new MemoryTransport();
var discovery = new MemoryDiscoveryNetwork();

// Three servers: 0:3, 3:5, and a spare 0:5 that can take over either.
var servers = new List<ServiceProvider>();
foreach (var (start, end) in new[] { (0, 3), (3, 5), (0, 5) })
{
    var services = new ServiceCollection();
    services.AddPetalsServer(o =>
        {
            o.ModelPath = model;
            o.Blocks = new BlockRange(start, end);
            o.ListenAddress = $"mem://server-{start}-{end}";
        })
        .UseCpuExecutor(o => o.ThreadCount = 1)
        .UseMemoryTransport(network)
        .UseDiscovery(_ => discovery.CreatePeer($"server-{start}-{end}"));
    var provider = services.BuildServiceProvider();
    foreach (var hosted in provider.GetServices<IHostedService>())
    {
        await hosted.StartAsync(CancellationToken.None);
    }

    servers.Add(provider);
    var server = provider.GetRequiredService<IPetalsServer>();
    Console.Error.WriteLine($"server {server.PeerId}: blocks {server.Blocks} at {server.LocalAddress}, {server.Throughput?.TokensPerSecondPerBlock:F0} tokens/s per block");
}

// The client: no addresses, only the discovery.
var clientServices = new ServiceCollection();
clientServices.AddPetalsClient(o => o.ModelPath = model)
    .UseMemoryTransport(network)
    .UseDiscovery(_ => discovery.CreatePeer("client"));
await using var client = clientServices.BuildServiceProvider();
using var lm = await client.GetRequiredService<IPetalsClient>().ConnectAsync();
var remote = (RemoteTransformerBlocks)lm.Blocks;
Console.Error.WriteLine("route: " + string.Join(", ", remote.Spans.Select(s => $"{s.Blocks} on {s.PeerId}")));
remote.SpanRecovered += (_, r) => Console.Error.WriteLine($"\n[recovered blocks {r.Blocks} from {r.FailedPeerId} onto {string.Join(", ", r.Replacements.Select(s => s.PeerId))} in {r.DetectionToResume.TotalMilliseconds:F0} ms]");

Console.Write(prompt);
var pieces = 0;
await foreach (var piece in lm.GenerateTextAsync(prompt, new GenerationOptions { MaxNewTokens = 40 }))
{
    Console.Write(piece);
    if (++pieces == 10)
    {
        // Stop the server of the first span in the middle of generation.
        var first = remote.Spans[0].PeerId;
        var victim = servers.First(s => s.GetRequiredService<IPetalsServer>() is { IsRunning: true } x && x.PeerId == first);
        foreach (var hosted in victim.GetServices<IHostedService>())
        {
            await hosted.StopAsync(CancellationToken.None);
        }
    }
}

Console.WriteLine();
Console.Error.WriteLine($"recoveries: {remote.Recoveries}");
foreach (var provider in servers)
{
    await provider.DisposeAsync();
}

return remote.Recoveries > 0 ? 0 : 1;
