using Microsoft.Extensions.Logging;
using Petals.Execution;
using Petals.Formats;
using Petals.Formats.Peft;
using Petals.Models;

namespace Petals.Hosting;

/// <content>The LoRA adapters of the served span: loaded from <see cref="PetalsServerOptions.AdapterDirectories"/> for each span the server takes.</content>
internal sealed partial class PetalsServerService
{
    /// <summary>
    /// The adapters for <paramref name="span"/>: those given in <see cref="PetalsServerOptions.Server"/> (sliced to the span)
    /// and those of <see cref="PetalsServerOptions.AdapterDirectories"/> (read for the span only).
    /// </summary>
    /// <exception cref="InvalidOperationException">A given adapter does not cover the span, or a directory does not load; the message names the adapter and the file.</exception>
    internal static IReadOnlyDictionary<string, LoraWeights> LoadAdapters(PetalsServerOptions settings, ModelConfig config, BlockRange span, ILogger logger)
    {
        var given = settings.Server.Adapters;
        if (settings.AdapterDirectories.Count == 0 && given.Count == 0)
        {
            return given;
        }

        var result = new Dictionary<string, LoraWeights>(StringComparer.Ordinal);
        foreach (var (name, lora) in given)
        {
            if (lora.Blocks.Start > span.Start || lora.Blocks.End < span.End)
            {
                throw new InvalidOperationException($"The LoRA adapter '{name}' of PetalsServerOptions.Server.Adapters covers blocks {lora.Blocks}, not the served blocks {span}.");
            }

            result[name] = lora.Slice(span);
        }

        foreach (var (name, directory) in settings.AdapterDirectories.OrderBy(a => a.Key, StringComparer.Ordinal))
        {
            LoraWeights lora;
            try
            {
                lora = PeftAdapter.Load(directory, config, span);
            }
            catch (ModelFormatException e)
            {
                throw new InvalidOperationException($"The LoRA adapter '{name}' ({directory}) does not load for blocks {span}: {e.Message}", e);
            }

            if (!result.TryAdd(name, lora))
            {
                throw new InvalidOperationException($"The LoRA adapter '{name}' is given twice (PetalsServerOptions.AdapterDirectories and PetalsServerOptions.Server.Adapters).");
            }

            PetalsHostingLog.AdapterLoaded(logger, name, span, lora);
        }

        return result;
    }
}
