using Petals.Formats.Gguf;
using Petals.Formats.HuggingFace;
using Petals.Models;

namespace Petals.Formats;

/// <summary>Opens model weights in whichever supported format a path holds.</summary>
public static class ModelLoader
{
    /// <summary>
    /// Opens <paramref name="path"/>: a <c>.gguf</c> file; a directory with <c>config.json</c> (and
    /// <c>model.safetensors</c> or a sharded index); or a <c>.safetensors</c> file with <c>config.json</c> beside it.
    /// </summary>
    /// <param name="path">The file or directory.</param>
    /// <returns>The weights; dispose them to release the files.</returns>
    /// <exception cref="ModelFormatException">When the path is none of those, or the files are malformed.</exception>
    /// <exception cref="IOException">When a file cannot be read.</exception>
    public static IModelWeights Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path))
        {
            if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            {
                return GgufModelWeights.Open(path);
            }

            if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            {
                var config = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, HuggingFaceConfig.FileName);
                if (!File.Exists(config))
                {
                    throw new ModelFormatException(path, null, $"a .safetensors file needs {HuggingFaceConfig.FileName} beside it.");
                }

                return HuggingFaceModelWeights.Open(path);
            }

            throw new ModelFormatException(path, null, "not a model file (expected a .gguf or .safetensors file, or a checkpoint directory).");
        }

        if (Directory.Exists(path))
        {
            if (File.Exists(Path.Combine(path, HuggingFaceConfig.FileName)))
            {
                return HuggingFaceModelWeights.Open(path);
            }

            throw new ModelFormatException(path, null, $"the directory has no {HuggingFaceConfig.FileName}.");
        }

        throw new ModelFormatException(path, null, "no such file or directory.");
    }
}
