// A Semantic Kernel Kernel whose chat completion is a Petals model: the PetalsChatClient (an IChatClient) is registered in
// the kernel's services as an IChatCompletionService (AsChatCompletionService()), and a prompt template with a variable is
// invoked through the kernel, then streamed. Every block runs in this process here; a client connected to a swarm
// (RemoteModel.ConnectAsync, or AddPetalsClient) works the same way.
// Usage: dotnet run --project samples/SemanticKernelChat -- [MODEL.gguf|HF-DIR]
using System.Reflection;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Petals.Backends.Cpu;
using Petals.Extensions.AI;
using Petals.Generation;

var modelPath = args.Length > 0 ? args[0] : Assembly.GetEntryAssembly()!.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "DefaultModel").Value!;
using var model = CausalLanguageModel.LoadLocal(modelPath, new CpuBlockExecutorFactory());
using var chat = new PetalsChatClient(model, new PetalsChatClientOptions { DefaultMaxOutputTokens = 32 });

var builder = Kernel.CreateBuilder();
builder.Services.AddSingleton(chat.AsChatCompletionService());
var kernel = builder.Build();

var settings = new PromptExecutionSettings { ExtensionData = new Dictionary<string, object> { ["temperature"] = 0.0, ["max_tokens"] = 24 } };
var arguments = new KernelArguments(settings) { ["animal"] = "a little bird" };
const string Prompt = "Tell me a story about {{$animal}}.";

var result = await kernel.InvokePromptAsync(Prompt, arguments);
Console.WriteLine($"kernel reply: {result.GetValue<string>()?.Trim()}");

Console.Write("streamed: ");
await foreach (var update in kernel.InvokePromptStreamingAsync(Prompt, arguments))
{
    Console.Write(update);
}

Console.WriteLine();
return 0;
