using System.CommandLine;
using Petals.Generation;
using Petals.Tensors;

namespace Petals.Cli.Commands;

/// <summary>Options and loading shared by the commands that run a model.</summary>
internal static class ModelOptions
{
    public static Option<string> Model() =>
        new("--model") { Description = "A .gguf file, or a Hugging Face directory (config.json, *.safetensors, tokenizer.json).", Required = true };

    public static Option<int?> Threads() =>
        new("--threads") { Description = "Threads for the CPU executor (default: all cores)." };

    public static Option<string> Output()
    {
        var option = new Option<string>("--output") { Description = "Output format.", DefaultValueFactory = _ => "text" };
        option.AcceptOnlyFromAmong("text", "json");
        return option;
    }

    public static bool IsJson(string? output) => string.Equals(output, "json", StringComparison.Ordinal);

    /// <summary>Loads a model with all blocks on the managed CPU executor, quantizing its weights at load as <paramref name="quantization"/> says (none by default).</summary>
    public static CausalLanguageModel LoadLocal(string path, int? threads, WeightQuantization quantization = default, IReadOnlyDictionary<string, string>? adapters = null)
    {
        if (!File.Exists(path) && !Directory.Exists(path))
        {
            throw new FileNotFoundException($"Model '{path}' does not exist.", path);
        }

        if (threads is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(threads), threads, "--threads must be at least 1.");
        }

        return CausalLanguageModel.LoadLocal(path, ExecutorFactories.Cpu(threads, quantization), adapters ?? new Dictionary<string, string>());
    }
}
