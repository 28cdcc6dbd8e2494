// Local generation: every block on this machine, with the managed SIMD executor.
// Usage: dotnet run --project samples/LocalGeneration -- [MODEL.gguf|HF-DIR] [PROMPT]
using System.Reflection;
using Petals.Backends.Cpu;
using Petals.Generation;

var model = args.Length > 0 ? args[0] : DefaultModel();
var prompt = args.Length > 1 ? args[1] : "Once upon a time";

using var lm = CausalLanguageModel.LoadLocal(model, new CpuBlockExecutorFactory());
Console.Write(prompt);
await foreach (var piece in lm.GenerateTextAsync(prompt, new GenerationOptions { MaxNewTokens = 40 }))
{
    Console.Write(piece);
}

Console.WriteLine();
return 0;

static string DefaultModel() =>
    Assembly.GetEntryAssembly()!.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "DefaultModel").Value!;
