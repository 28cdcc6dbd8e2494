// A block server in a .NET generic host: AddPetalsServer with the CPU executor and TCP, its options validated when the
// host starts, logs through the host's logging, stopped cleanly on Ctrl-C. With --once a client (AddPetalsClient) connects
// to it over TCP, generates a few tokens, and the host stops (what the samples test runs).
// Usage: dotnet run --project samples/HostedServer -- [MODEL.gguf|HF-DIR] [--once]
using System.Reflection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Petals.Generation;
using Petals.Hosting;
using Petals.Models;

var model = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal))
    ?? Assembly.GetEntryAssembly()!.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "DefaultModel").Value!;
var once = args.Contains("--once");

var builder = Host.CreateApplicationBuilder();
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Services.AddPetalsServer(o =>
    {
        o.ModelPath = model;
        o.Blocks = new BlockRange(0, 5);
        o.ListenAddress = "tcp://127.0.0.1:0";
        o.Server.CacheTokens = 8192;
    })
    .UseCpuExecutor()
    .UseTcpTransport();
using var host = builder.Build();
await host.StartAsync();
var server = host.Services.GetRequiredService<IPetalsServer>();
Console.WriteLine($"listening {server.LocalAddress} blocks {server.Blocks} model {server.ModelId}");

if (once)
{
    // A client in a container of its own (the server's port is only known now): it connects over TCP by address.
    var clientServices = new ServiceCollection();
    clientServices.AddPetalsClient(o =>
    {
        o.ModelPath = model;
        o.Peers.Add(server.LocalAddress.ToString());
    }).UseTcpTransport();
    await using var client = clientServices.BuildServiceProvider();
    using var lm = await client.GetRequiredService<IPetalsClient>().ConnectAsync();
    await foreach (var piece in lm.GenerateTextAsync("Once upon a time", new GenerationOptions { MaxNewTokens = 20 }))
    {
        Console.Write(piece);
    }

    Console.WriteLine();
    await host.StopAsync();
    Console.WriteLine($"served {server.GetStatistics().TokensProcessed} tokens");
    return 0;
}

await host.WaitForShutdownAsync();
return 0;
