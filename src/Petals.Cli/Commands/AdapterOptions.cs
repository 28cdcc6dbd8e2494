using System.CommandLine;
using Petals.Discovery;

namespace Petals.Cli.Commands;

/// <summary>
/// The LoRA adapter flags: <c>--adapters NAME=DIR,…</c> (PEFT adapter directories held by a server, or by the blocks run
/// in this process) and <c>--adapter NAME</c> (the adapter a generation runs with).
/// </summary>
internal static class AdapterOptions
{
    /// <summary><c>--adapters</c>, described as held by <paramref name="holder"/>.</summary>
    public static Option<string?> Adapters(string holder) => new("--adapters")
    {
        Description = $"LoRA adapters {holder} holds, NAME=DIR[,NAME=DIR…]: each DIR a PEFT adapter (adapter_config.json + adapter_model.safetensors); names of ASCII letters, digits, '_', '-', '.'.",
    };

    /// <summary><c>--adapter</c>.</summary>
    public static Option<string?> Adapter() => new("--adapter")
    {
        Description = "Generate with this LoRA adapter: one the servers announce (petals serve --adapters), or, with the blocks run here, one of --adapters.",
    };

    /// <summary>The value of <c>--adapters</c> as name → directory (empty when not given).</summary>
    /// <exception cref="ArgumentException">An entry is not NAME=DIR, a name is invalid or repeated, a directory does not exist, or there are more than <see cref="AnnouncementLimits.MaxAdapters"/>.</exception>
    public static Dictionary<string, string> ParseAdapters(string? text)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (text is null)
        {
            return result;
        }

        foreach (var entry in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var equals = entry.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0 || equals == entry.Length - 1)
            {
                throw new ArgumentException($"--adapters: '{entry}' is not NAME=DIR (e.g. style=./adapters/style).");
            }

            var name = entry[..equals].Trim();
            var directory = entry[(equals + 1)..].Trim();
            if (!AnnouncementLimits.IsValidAdapterName(name, out var fault))
            {
                throw new ArgumentException($"--adapters: {fault}");
            }

            if (!Directory.Exists(directory))
            {
                throw new ArgumentException($"--adapters: the directory '{directory}' of adapter '{name}' does not exist.");
            }

            if (!result.TryAdd(name, directory))
            {
                throw new ArgumentException($"--adapters: the adapter '{name}' is given twice.");
            }
        }

        return result.Count <= AnnouncementLimits.MaxAdapters
            ? result
            : throw new ArgumentException($"--adapters: {result.Count} adapters; a server holds at most {AnnouncementLimits.MaxAdapters}.");
    }

    /// <summary>The value of <c>--adapter</c>, checked (null when not given).</summary>
    /// <exception cref="ArgumentException">The name is invalid.</exception>
    public static string? ParseAdapter(string? text) =>
        text is null || AnnouncementLimits.IsValidAdapterName(text, out var fault)
            ? text
            : throw new ArgumentException($"--adapter: {fault}");
}
