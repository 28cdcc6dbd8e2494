// Chat with a model served by a swarm, through Microsoft.Extensions.AI's IChatClient: two block servers (blocks 0:3 and
// 3:5) and a client in one process, over the in-memory transport and an in-memory discovery. The client finds the servers,
// connects the model, and a PetalsChatClient holds a three-turn conversation over it, printing each reply and its usage.
// Later turns extend the earlier ones, so the client reuses the conversation's server-side cache (only the new tokens are
// prefilled).
// Usage: dotnet run --project samples/ChatOverSwarm -- [MODEL.gguf|HF-DIR]
using System.Reflection;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Petals.Extensions.AI;
using Petals.Hosting;
using Petals.Models;
using Petals.Testing.Discovery;
using Petals.Testing.Transport;

var model = args.Length > 0 ? args[0] : Assembly.GetEntryAssembly()!.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "DefaultModel").Value!;
var network = new MemoryTransport();
var discovery = new MemoryDiscoveryNetwork();

var servers = new List<ServiceProvider>();
foreach (var (start, end) in new[] { (0, 3), (3, 5) })
{
    var services = new ServiceCollection();
    services.AddPetalsServer(o =>
        {
            o.ModelPath = model;
            o.Blocks = new BlockRange(start, end);
            o.ListenAddress = $"mem://chat-server-{start}-{end}";
        })
        .UseCpuExecutor(o => o.ThreadCount = 1)
        .UseMemoryTransport(network)
        .UseDiscovery(_ => discovery.CreatePeer($"chat-server-{start}-{end}"));
    var provider = services.BuildServiceProvider();
    foreach (var hosted in provider.GetServices<IHostedService>())
    {
        await hosted.StartAsync(CancellationToken.None);
    }

    servers.Add(provider);
}

var clientServices = new ServiceCollection();
clientServices.AddPetalsClient(o => o.ModelPath = model)
    .UseMemoryTransport(network)
    .UseDiscovery(_ => discovery.CreatePeer("chat-client"));
await using var client = clientServices.BuildServiceProvider();
using var lm = await client.GetRequiredService<IPetalsClient>().ConnectAsync();

// The chat client over the connected model (which this program keeps owning); any IChatClient code works with it.
using var chat = new PetalsChatClient(lm);
var metadata = chat.GetService<ChatClientMetadata>();
Console.WriteLine($"provider {metadata?.ProviderName}, model {metadata?.DefaultModelId}");

List<ChatMessage> history = [new(ChatRole.System, "You tell short stories for children.")];
string[] questions = ["Tell me about a little dog.", "What did the dog find?", "How did the story end?"];
var options = new ChatOptions { MaxOutputTokens = 24, Temperature = 0 };
for (var turn = 0; turn < questions.Length; turn++)
{
    history.Add(new ChatMessage(ChatRole.User, questions[turn]));
    var response = await chat.GetResponseAsync(history, options);
    history.AddMessages(response);
    Console.WriteLine($"user: {questions[turn]}");
    Console.WriteLine($"assistant: {response.Text.Trim()}");
    Console.WriteLine(
        $"turn {turn + 1} usage: {response.Usage?.InputTokenCount} input tokens ({response.Usage?.CachedInputTokenCount ?? 0} already on the servers), "
        + $"{response.Usage?.OutputTokenCount} output tokens, finish {response.FinishReason}");
}

foreach (var provider in servers)
{
    Console.Error.WriteLine($"server: {provider.GetRequiredService<IPetalsServer>().GetStatistics().SessionsOpened} sessions opened");
    await provider.DisposeAsync();
}

return 0;
