using System.Globalization;
using Petals.Models;

namespace Petals.Formats;

/// <summary>
/// The model id that servers and clients announce in the handshake (docs/wire-protocol.md, section 1): peers that
/// load the same model compute the same id, so a client never sends hidden states to a server of another model.
/// </summary>
public static class ModelIdentity
{
    /// <summary>
    /// The id of the model at <paramref name="modelPath"/>: its file or directory name (without <c>.gguf</c>) followed by
    /// the architecture and the shapes that hidden states depend on, e.g. <c>stories260K-f32:llama-5x64-v512</c>.
    /// </summary>
    /// <param name="modelPath">The model file or directory.</param>
    /// <param name="config">The model's configuration.</param>
    /// <returns>The id, at most 240 UTF-8 bytes (so that DHT block keys <c>"{id}.{block}"</c> stay within the 256-byte key limit).</returns>
    public static string Compute(string modelPath, ModelConfig config)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        ArgumentNullException.ThrowIfNull(config);
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelPath)));
        if (name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            name = name[..^5];
        }

        var shape = string.Create(CultureInfo.InvariantCulture, $":{config.Architecture}-{config.NumLayers}x{config.HiddenSize}-v{config.VocabSize}");
        const int MaxBytes = Discovery.AnnouncementLimits.MaxModelIdBytes;
        while (System.Text.Encoding.UTF8.GetByteCount(name) + shape.Length > MaxBytes)
        {
            name = name[..^1];
        }

        return name + shape;
    }
}
