// An app that takes its IChatClient from dependency injection, the way it would take any provider's: a generic host with
// a block server (AddPetalsServer) and a client of it (AddPetalsClient), and AddPetalsChatClient() over that client with
// Microsoft.Extensions.AI's logging and OpenTelemetry middleware. The chat logs go to the console logger, the trace and
// metrics to OpenTelemetry's console exporter. The model connects on the first chat call and is closed with the host.
// The server and the client share the in-memory transport here; swap UseMemoryTransport(…) for UseTcpTransport() and the
// peer for a server's address to run the same app against a real swarm.
// Usage: dotnet run --project samples/ChatClientDI -- [MODEL.gguf|HF-DIR]
using System.Reflection;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Petals.Models;
using Petals.Testing.Transport;

const string TelemetrySource = "Petals.Samples.ChatClientDI";
var model = args.Length > 0 ? args[0] : Assembly.GetEntryAssembly()!.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "DefaultModel").Value!;
var network = new MemoryTransport();

using var tracing = Sdk.CreateTracerProviderBuilder().AddSource(TelemetrySource).AddConsoleExporter().Build();
using var metering = Sdk.CreateMeterProviderBuilder().AddMeter(TelemetrySource).AddConsoleExporter().Build();

var builder = Host.CreateApplicationBuilder();
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Logging.AddFilter("Microsoft.Extensions.AI", LogLevel.Debug);

builder.Services.AddPetalsServer(o =>
    {
        o.ModelPath = model;
        o.Blocks = new BlockRange(0, 5);
        o.ListenAddress = "mem://di-server";
    })
    .UseCpuExecutor(o => o.ThreadCount = 1)
    .UseMemoryTransport(network);
builder.Services.AddPetalsClient(o =>
    {
        o.ModelPath = model;
        o.Peers.Add("mem://di-server");
    })
    .UseMemoryTransport(network);
builder.Services.AddPetalsChatClient(o => o.DefaultMaxOutputTokens = 32)
    .UseLogging()
    .UseOpenTelemetry(sourceName: TelemetrySource);

using var host = builder.Build();
await host.StartAsync();

var chat = host.Services.GetRequiredService<IChatClient>();
var response = await chat.GetResponseAsync("Tell me a story about a cat.", new ChatOptions { Temperature = 0 });
Console.WriteLine($"reply: {response.Text.Trim()}");
Console.WriteLine($"usage: {response.Usage?.InputTokenCount} input tokens, {response.Usage?.OutputTokenCount} output tokens");

await host.StopAsync();
metering.ForceFlush();
return 0;
